#!/usr/bin/env python3
"""How long history tool calls take over stdio, first and warm, on either backend.

    scripts/bench-history.py BIN DATA_DIR REPO_ID [relace BASE_URL CREDENTIAL] -- 'TOOL JSON'...

Starts `BIN --data-dir DATA_DIR serve --repo REPO_ID` (`--backend local`, or
`--backend relace --base-url BASE_URL` with CREDENTIAL as RELACE_API_KEY), calls each
tool in turn with its JSON arguments (`repo_id` added), and prints each call's wall
time. On the relace backend, remove DATA_DIR/relace-cache first to time a first fetch.
Example, tokio's history in a store at ./data served by `api` at 127.0.0.1:8787:

    scripts/bench-history.py target/release/scoped-repo-mcp data $REPO -- \\
        'list_commits {}' 'list_commits {}' \\
        'get_commit {"commit":"main","detail":"patch"}' 'get_commit {"commit":"main","detail":"patch"}'
    scripts/bench-history.py target/release/scoped-repo-mcp serve-data $REPO \\
        relace http://127.0.0.1:8787/v1 $KEY -- 'list_commits {}' ...
"""

import json
import os
import subprocess
import sys
import time


def main():
    binary, data, repo = sys.argv[1:4]
    rest = sys.argv[4:]
    env = dict(os.environ)
    env.pop("RELACE_API_KEY", None)
    env.pop("SCOPED_REPO_IDS", None)
    args = [binary, "--data-dir", data, "serve", "--repo", repo]
    if rest and rest[0] == "relace":
        args += ["--backend", "relace", "--base-url", rest[1]]
        env["RELACE_API_KEY"] = rest[2]
        rest = rest[3:]
    else:
        args += ["--backend", "local"]
    calls = rest[rest.index("--") + 1 :]
    server = subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    next_id = 0

    def rpc(method, params):
        nonlocal next_id
        next_id += 1
        server.stdin.write(
            json.dumps({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params}) + "\n"
        )
        server.stdin.flush()
        while True:
            message = json.loads(server.stdout.readline())
            if message.get("id") == next_id:
                return message

    rpc(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench-history", "version": "0"},
        },
    )
    server.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    server.stdin.flush()
    for call in calls:
        tool, arguments = call.split(" ", 1)
        arguments = json.loads(arguments)
        arguments["repo_id"] = repo
        started = time.perf_counter()
        result = rpc("tools/call", {"name": tool, "arguments": arguments}).get("result", {})
        ms = (time.perf_counter() - started) * 1000
        failed = ""
        if result.get("isError"):
            failed = " ERROR " + result["content"][0]["text"][:200]
        print(f"{tool} {call.split(' ', 1)[1]}: {ms:.0f} ms{failed}")
    server.stdin.close()
    server.wait()


if __name__ == "__main__":
    main()
