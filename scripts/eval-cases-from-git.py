#!/usr/bin/env python3
"""Build ranked-retrieval cases from a repository's own history, in the format of
the pytest development set: one JSON object a line with `query` (the commit message,
trailers removed), `gold` (the 1-3 files with the given suffix the commit modified and
that existed at its parent), `commit`, `parent` and `date`.

Usage: eval-cases-from-git.py REPO [--suffix .py] > cases.jsonl
Then: cargo run --release --example eval_ranked -- REPO cases.jsonl --glob '*.py'
"""

import argparse
import json
import re
import subprocess
import sys

TRAILER = re.compile(r"^(Co-authored-by|Signed-off-by|Reviewed-by|Fixes|Closes)\b", re.I)


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("repo")
    ap.add_argument("--suffix", default=".py")
    args = ap.parse_args()
    log = git(args.repo, "log", "--no-merges", "--format=%H%x00%P%x00%aI%x00%B%x1e", "HEAD")
    count = 0
    for record in log.split("\x1e"):
        parts = record.strip("\n").split("\x00")
        if len(parts) < 4:
            continue
        commit, parents, date, message = parts[0].strip(), parts[1].split(), parts[2], parts[3]
        if len(parents) != 1:
            continue
        query = "\n".join(l for l in message.strip().splitlines() if not TRAILER.match(l)).strip()
        if len(query) < 10:
            continue
        status = git(args.repo, "diff", "--name-status", "--no-renames", parents[0], commit)
        gold = [
            line.split("\t")[1]
            for line in status.splitlines()
            if line.startswith("M\t") and line.endswith(args.suffix)
        ]
        if not 1 <= len(gold) <= 3:
            continue
        case = {"id": commit[:10], "commit": commit, "parent": parents[0], "date": date, "query": query, "gold": gold}
        print(json.dumps(case))
        count += 1
    print(f"{count} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
