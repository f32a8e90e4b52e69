#!/usr/bin/env bash
# Drive the server with the real MCP clients people use:
# - the MCP conformance suite (streamable HTTP, anonymous loopback sessions),
# - the MCP Inspector CLI over streamable HTTP with a bearer token,
# - the Python `mcp` client over the legacy HTTP+SSE transport with a bearer token,
# - OAuth sign-in end to end: the TypeScript SDK's OAuth client, Chromium and Playwright.
# Usage: tests/clients/run.sh [path/to/scoped-repo-mcp]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${1:-$ROOT/target/debug/scoped-repo-mcp}"
# shellcheck source=common.sh
. "$ROOT/tests/clients/common.sh"

WORK="$(mktemp -d)"
cleanup() { [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

ensure_node_tools
ensure_python_client
ensure_oauth_tools

DATA="$WORK/data"
mkdir -p "$WORK/src"
printf 'def backoff(n):\n    return 2 ** n\n' > "$WORK/src/retry.py"
REPO="$("$BIN" --data-dir "$DATA" repo create --from-dir "$WORK/src" 2>/dev/null)"
OTHER="$("$BIN" --data-dir "$DATA" repo create 2>/dev/null)"

echo "== conformance suite (streamable HTTP)"
start_http_server "$DATA" --allow-anonymous --repo "$REPO"
(cd "$WORK" && HOME="$WORK" conformance server --url "http://$ADDR/mcp" --suite all \
    --expected-failures "$ROOT/tests/clients/conformance-expected-failures.yml" -o "$WORK/conformance" \
    > "$WORK/conformance.log" 2>&1) || { tail -n 80 "$WORK/conformance.log"; exit 1; }
grep -E '^(Total|Baseline)' "$WORK/conformance.log" || true
# A fresh server: the first suite leaves its sessions open, and anonymous sessions
# share one per-credential session cap.
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
start_http_server "$DATA" --allow-anonymous --repo "$REPO"

echo "== conformance suite 0.2.0 (protocol 2026-07-28 requirements)"
(cd "$WORK" && HOME="$WORK" "$CONFORMANCE_NEXT" server --url "http://$ADDR/mcp" --requirements 2026-07-28 \
    --expected-failures "$ROOT/tests/clients/conformance-2026-07-28-expected-failures.yml" -o "$WORK/conformance-next" \
    > "$WORK/conformance-next.log" 2>&1) || { tail -n 80 "$WORK/conformance-next.log"; exit 1; }
grep -E '^(Total|Baseline)' "$WORK/conformance-next.log" || true
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

echo "== MCP Inspector CLI (streamable HTTP, bearer token)"
TOKEN="$("$BIN" --data-dir "$DATA" token create --repo "$REPO" --ttl 10m --name inspector 2>/dev/null)"
start_http_server "$DATA"
export HOME="$WORK"
tools="$(mcp-inspector --cli "http://$ADDR/mcp" --transport http --header "Authorization: Bearer $TOKEN" --method tools/list)"
echo "$tools" | grep -q '"read_file"' || { echo "tools/list lacks read_file: $tools"; exit 1; }
if echo "$tools" | grep -q '"create_scoped_token"'; then echo "a token session must not list create_scoped_token"; exit 1; fi
read="$(mcp-inspector --cli "http://$ADDR/mcp" --transport http --header "Authorization: Bearer $TOKEN" \
    --method tools/call --tool-name read_file --tool-arg "repo_id=$REPO" --tool-arg path=retry.py)"
echo "$read" | grep -q 'return 2 \*\* n' || { echo "read_file answered: $read"; exit 1; }
if mcp-inspector --cli "http://$ADDR/mcp" --transport http --header "Authorization: Bearer $TOKEN" \
    --method tools/call --tool-name read_file --tool-arg "repo_id=$OTHER" --tool-arg path=x >/dev/null 2>&1; then
    echo "a repo outside the token's scope was readable"; exit 1
fi
echo "inspector: listed tools, read a file, was refused another repo"

echo "== Python mcp client (legacy HTTP+SSE, bearer token)"
"$PY" "$ROOT/tests/clients/legacy_sse_client.py" "http://$ADDR/sse" "$TOKEN" "$REPO" "$OTHER"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

echo "== OAuth in a browser (Chromium driven by Playwright; the TypeScript SDK's OAuth client)"
KEY="$("$BIN" --data-dir "$DATA" key create --name oauth-e2e 2>/dev/null)"
start_http_server "$DATA" --oauth --oauth-allow-private-client-metadata
# The suite's authorization-server scenario that needs no person at a browser.
(cd "$WORK" && HOME="$WORK" "$CONFORMANCE_NEXT" authorization --url "http://$ADDR" \
    --scenario authorization-server-metadata-endpoint --resource "http://$ADDR/mcp" \
    -o "$WORK/conformance-auth" > "$WORK/conformance-auth.log" 2>&1) \
    || { tail -n 40 "$WORK/conformance-auth.log"; exit 1; }
grep -E '^Passed' "$WORK/conformance-auth.log"
# Bare imports resolve from the script's own folder: run a copy beside the packages.
cp "$ROOT/tests/clients/oauth_browser.mjs" "$TOOLS/oauth/"
node "$TOOLS/oauth/oauth_browser.mjs" "http://$ADDR/mcp" "$KEY" "$REPO" "$OTHER"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
echo "clients: ok"
