#!/usr/bin/env python3
"""Time a repo's import and the first ranked answer a fresh `serve` gives on it.

    scripts/bench-first-ranked.py BIN SOURCE_DIR [RUNS]

For each run: a fresh data directory; `BIN repo create --from-dir SOURCE_DIR` timed (the
import, with whatever indexes it builds); then a `serve` started on the new repo, sent
`initialize` and one `search_repo` ranked question over stdio, timed from the spawn to
the answer, with `--ranked-wait 600s` so that a build, if the server has to make one,
is waited for and counted; then the stored ranked index is removed and a second fresh
`serve` timed the same way: the first answer when nothing was stored (what every first
ranked question paid before imports built the index); and once more with
`--ranked-wait 0s`: the partial answer a question gets at once while a build runs.
Prints each run's seconds,
whether each server loaded or built the ranked index (from its log), how long the
import's own ranked build and store took (from its log), and the medians.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

QUESTION = "where is the task woken when the timer deadline expires"


def first_answer(bin_, data, repo, wait="600s"):
    started = time.monotonic()
    p = subprocess.Popen(
        [bin_, "--data-dir", data, "serve", "--repo", repo, "--ranked-wait", wait],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "RUST_LOG": "scoped_repo_mcp=info"},
        text=True,
    )
    send = lambda m: (p.stdin.write(json.dumps(m) + "\n"), p.stdin.flush())
    send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"}}})
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "search_repo", "arguments": {
            "repo_id": repo, "query": QUESTION, "mode": "ranked"}}})
    answer = None
    for line in p.stdout:
        msg = json.loads(line)
        if msg.get("id") == 2:
            answer = msg
            break
    took = time.monotonic() - started
    p.stdin.close()
    log = p.stderr.read()
    p.wait()
    out = answer["result"]["structuredContent"]
    how = "loaded" if "ranked index loaded" in log else (
        "built" if "ranked index built" in log else "?")
    return took, how, out["partial"], out["ranked"][0]["path"] if out["ranked"] else None


def main():
    bin_, source = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    imports, firsts, rebuilt, ranked_build, partials = [], [], [], [], []
    for i in range(runs):
        data = tempfile.mkdtemp(prefix="bench-first-ranked-")
        try:
            started = time.monotonic()
            made = subprocess.run(
                [bin_, "--data-dir", data, "repo", "create", "--from-dir", source],
                capture_output=True, text=True, check=True,
                env={**os.environ, "RUST_LOG": "scoped_repo_mcp=info"})
            imported = time.monotonic() - started
            repo = made.stdout.strip()
            # The import's own ranked build, to its store: "ranked index stored ... took_ms".
            stored = re.search(r"took_ms=(\d+).*ranked index stored|ranked index stored.*took_ms=(\d+)",
                               made.stderr)
            build_s = int(next(g for g in stored.groups() if g)) / 1000 if stored else float("nan")
            took, how, partial, top = first_answer(bin_, data, repo)
            os.remove(os.path.join(data, "index", repo, "ranked.bin"))
            again, how2, partial2, top2 = first_answer(bin_, data, repo)
            os.remove(os.path.join(data, "index", repo, "ranked.bin"))
            part, _, partial3, top3 = first_answer(bin_, data, repo, "0s")
            partials.append(part)
            imports.append(imported)
            firsts.append(took)
            rebuilt.append(again)
            ranked_build.append(build_s)
            print(f"run {i}: import {imported:.2f} s (its ranked build and store {build_s:.2f} s), "
                  f"first ranked answer {took:.2f} s ({how}, partial={partial}, top={top}); "
                  f"with nothing stored {again:.2f} s ({how2}, partial={partial2}, top={top2}); "
                  f"not waiting {part:.2f} s (partial={partial3}, top={top3})",
                  flush=True)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    print(f"median: import {statistics.median(imports):.2f} s "
          f"(ranked build and store {statistics.median(ranked_build):.2f} s), "
          f"first ranked answer {statistics.median(firsts):.2f} s, "
          f"with nothing stored {statistics.median(rebuilt):.2f} s, "
          f"not waiting (partial) {statistics.median(partials):.2f} s")


if __name__ == "__main__":
    main()
