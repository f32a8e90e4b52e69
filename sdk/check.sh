#!/usr/bin/env bash
# Run the official Relace SDKs' check scripts against `scoped-repo-mcp api` on a fresh
# store: installs relace==2.1.0 (pip, in a venv) and @relace-ai/relace@0.6.0 (npm) in
# a scratch directory, starts the API on a free port with a new account key, and points
# both SDKs at it with nothing but RELACE_BASE_URL and RELACE_API_KEY. Their git helpers
# run with a scratch HOME, and reach this server through the settings
# `scoped-repo-mcp git-env` prints (GIT_CONFIG_*: url.<base>.insteadOf for the hosted
# URL with the token in it), which the check scripts put in their environment.
# Usage: sdk/check.sh [path/to/scoped-repo-mcp]   (default: target/debug/scoped-repo-mcp)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:-target/debug/scoped-repo-mcp}")"
WORK="$(mktemp -d)"
API_PID=""
cleanup() {
  if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "-- installing relace==2.1.0 and @relace-ai/relace@0.6.0"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check relace==2.1.0
mkdir -p "$WORK/ts"
cp sdk/ts/check_sdk.mjs "$WORK/ts/"
(cd "$WORK/ts" && echo '{"private": true, "type": "module"}' > package.json \
  && npm install --silent --no-audit --no-fund @relace-ai/relace@0.6.0 >/dev/null)

echo "-- starting scoped-repo-mcp api"
KEY="$("$BIN" --data-dir "$WORK/data" key create --name sdk-check 2>/dev/null)"
"$BIN" --data-dir "$WORK/data" api --listen 127.0.0.1:0 >"$WORK/api.out" 2>"$WORK/api.err" &
API_PID=$!
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$WORK/api.out" 2>/dev/null && break
  sleep 0.05
done
BASE="$(sed -n 's/^listening on //p' "$WORK/api.out")"
[ -n "$BASE" ] || { cat "$WORK/api.err"; echo "the API did not start"; exit 1; }

export RELACE_BASE_URL="$BASE" RELACE_API_KEY="$KEY" SCOPED_REPO_MCP_BIN="$BIN"
# git for the SDKs' git helpers: a scratch home, no system settings, no prompts.
mkdir -p "$WORK/home"
export HOME="$WORK/home" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
git config --global user.name "SDK check"
git config --global user.email "sdk-check@example.com"
git config --global init.defaultBranch main
"$WORK/venv/bin/python" sdk/python/check_sdk.py
(cd "$WORK/ts" && node check_sdk.mjs)
