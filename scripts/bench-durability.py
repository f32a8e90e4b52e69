#!/usr/bin/env python3
"""What durable writes cost: SQLite's synchronous=FULL against NORMAL, and answered
writes of `api` end to end, for one or two builds of scoped-repo-mcp side by side.

    scripts/bench-durability.py [--n 300] [--dir DIR] BINARY [BINARY…]

Part 1 times single-row write transactions in WAL mode with synchronous=NORMAL and
=FULL on the file system of DIR (default: the system temp dir), interleaved in blocks
so both see the same disk. Part 2 starts `api` of each BINARY on a fresh data directory
there and times, interleaved call by call, a token mint (POST /v1/repo_token), its
revocation (DELETE), and a one-file commit (POST /v1/repo/{id}/update). Prints Markdown
tables with p50/p99 and the ratio to the first binary.
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.request


def pct(samples, p):
    s = sorted(samples)
    return s[round((len(s) - 1) * p)]


def sqlite_part(root, n):
    results = {}
    conns = {}
    for mode in ("NORMAL", "FULL"):
        path = os.path.join(root, f"sync-{mode}.db")
        c = sqlite3.connect(path, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute(f"PRAGMA synchronous={mode}")
        c.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)")
        conns[mode] = c
        results[mode] = []
    for block in range(10):
        order = ("NORMAL", "FULL") if block % 2 == 0 else ("FULL", "NORMAL")
        for mode in order:
            c = conns[mode]
            for i in range(n // 10):
                t = time.perf_counter()
                c.execute("BEGIN")
                c.execute("INSERT INTO t (v) VALUES (?)", ("x" * 100,))
                c.execute("COMMIT")
                results[mode].append(time.perf_counter() - t)
    print("| SQLite WAL, one-row write transaction | n | p50 µs | p99 µs |")
    print("| --- | --- | --- | --- |")
    for mode in ("NORMAL", "FULL"):
        s = results[mode]
        print(f"| synchronous={mode} | {len(s)} | {pct(s, .5)*1e6:.0f} | {pct(s, .99)*1e6:.0f} |")
    print()
    print(f"FULL/NORMAL at p50: {pct(results['FULL'], .5)/pct(results['NORMAL'], .5):.2f}x")
    print()


class Api:
    def __init__(self, binary, root):
        self.data = tempfile.mkdtemp(dir=root)
        env = dict(os.environ, RUST_LOG="warn")
        env.pop("RELACE_API_KEY", None)
        run = lambda *a: subprocess.run(
            [binary, "--data-dir", self.data, *a], check=True, capture_output=True, text=True, env=env
        ).stdout.strip()
        self.key = run("key", "create", "--name", "bench")
        src = tempfile.mkdtemp(dir=root)
        with open(os.path.join(src, "a.txt"), "w") as f:
            f.write("alpha\n")
        self.repo = run("repo", "create", "--from-dir", src)
        self.proc = subprocess.Popen(
            [binary, "--data-dir", self.data, "api", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        self.base = self.proc.stdout.readline().strip().removeprefix("listening on ")
        self.n = 0

    def call(self, method, path, body=None):
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        t = time.perf_counter()
        with urllib.request.urlopen(req) as r:
            out = r.read()
        return time.perf_counter() - t, out

    def mint_revoke_commit(self):
        dt_mint, out = self.call("POST", "/repo_token", {"name": "b", "repo_ids": [self.repo], "ttl_seconds": 600})
        token = json.loads(out)["token"]
        dt_revoke, _ = self.call("DELETE", f"/repo_token/{token}")
        self.n += 1
        op = {"type": "write", "filename": "a.txt", "content": f"v{self.n}\n"}
        dt_commit, _ = self.call("POST", f"/repo/{self.repo}/update", {"source": {"type": "diff", "operations": [op]}})
        return dt_mint, dt_revoke, dt_commit

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)


def api_part(binaries, root, n):
    apis = [Api(b, root) for b in binaries]
    samples = [([], [], []) for _ in binaries]
    for _ in range(10):
        for a in apis:
            a.mint_revoke_commit()
    for i in range(n):
        order = range(len(apis)) if i % 2 == 0 else reversed(range(len(apis)))
        for k in order:
            for s, dt in zip(samples[k], apis[k].mint_revoke_commit()):
                s.append(dt)
    for a in apis:
        a.stop()
    print("| binary | call | n | p50 ms | p99 ms | p50 vs first |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k, b in enumerate(binaries):
        for name, s, first in zip(("mint", "revoke", "commit"), samples[k], samples[0]):
            print(f"| {b} | {name} | {len(s)} | {pct(s, .5)*1e3:.2f} | {pct(s, .99)*1e3:.2f} | {pct(s, .5)/pct(first, .5):.2f}x |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    root = tempfile.mkdtemp(dir=args.dir)
    try:
        sqlite_part(root, args.n * 3)
        api_part(args.binaries, root, args.n)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
