#!/usr/bin/env bash
# git over `scoped-repo-mcp api` against baselines measured in the same run:
#  1. clone of a large repo through api (smart HTTP, protocol v2) against
#     `git clone --no-local` of the same bare repo in the data directory;
#  2. a push of 1,000 changed files against `update_repo_files` (MCP over stdio) of a
#     change of the same files and sizes.
# The large repo: CORPUS (default: the cargo registry's sources) plus EXTRA_MB of
# generated source text, imported with `repo create --from-dir`.
#
# Usage: scripts/bench-git-http.sh [path/to/scoped-repo-mcp]   (default: target/release/…)
#        CORPUS=dir EXTRA_MB=120 ROUNDS=3 scripts/bench-git-http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${1:-target/release/scoped-repo-mcp}")"
CORPUS="${CORPUS:-$HOME/.cargo/registry/src}"
EXTRA_MB="${EXTRA_MB:-120}"
ROUNDS="${ROUNDS:-3}"
WORK="$(mktemp -d)"
API_PID=""
cleanup() {
  if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
export GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 HOME="$WORK/home"
mkdir -p "$HOME"
git config --global user.name bench
git config --global user.email bench@example.com

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "-- building the corpus"
mkdir -p "$WORK/src/generated"
cp -r "$CORPUS" "$WORK/src/corpus"
python3 - "$WORK/src/generated" "$EXTRA_MB" <<'PY'
import os, random, sys
root, mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
words = [f"ident{i}" for i in range(5000)]
written, n = 0, 0
while written < mb * 1024 * 1024:
    lines = [f"fn {rng.choice(words)}_{n}_{j}(x: u64) -> u64 {{ x * {rng.randrange(1 << 30)} + {rng.choice(words)}() }}" for j in range(400)]
    text = "\n".join(lines) + "\n"
    d = os.path.join(root, f"m{n // 100}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{n}.rs"), "w") as f:
        f.write(text)
    written += len(text)
    n += 1
PY
DATA="$WORK/data"
start=$(now)
ID="$("$BIN" --data-dir "$DATA" repo create --from-dir "$WORK/src" 2>/dev/null | head -1)"
echo "imported repo $ID in $(secs "$start" "$(now)") s"
BARE="$DATA/repos/$ID.git"
TOKEN="$("$BIN" --data-dir "$DATA" token create --repo "$ID" --name bench 2>/dev/null | grep -o 'rlcr-[0-9a-f]*' | head -1)"

"$BIN" --data-dir "$DATA" api --listen 127.0.0.1:0 >"$WORK/api.out" 2>"$WORK/api.err" &
API_PID=$!
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$WORK/api.out" 2>/dev/null && break
  sleep 0.05
done
BASE="$(sed -n 's/^listening on //p' "$WORK/api.out")"
URL="${BASE/http:\/\//http://token:$TOKEN@}/repo/$ID.git"

echo "-- 1. clone: api (smart HTTP, v2) vs git clone --no-local, $ROUNDS rounds, alternating"
api_times=""; local_times=""
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/c-api" "$WORK/c-local"
  sync
  start=$(now); git -c credential.helper= clone --quiet "$URL" "$WORK/c-api"; t=$(secs "$start" "$(now)")
  api_times="$api_times $t"
  sync
  start=$(now); git clone --quiet --no-local "$BARE" "$WORK/c-local"; t2=$(secs "$start" "$(now)")
  local_times="$local_times $t2"
  echo "round $r: api $t s, --no-local $t2 s"
done
PACK_MB=$(du -sm "$WORK/c-api/.git/objects" | cut -f1)
TREE_MB=$(du -sm --exclude=.git "$WORK/c-api" | cut -f1)
A=$(echo $api_times | median); L=$(echo $local_times | median)
echo "clone: work tree ${TREE_MB} MB, pack ${PACK_MB} MB; median api ${A} s, --no-local ${L} s, ratio $(python3 -c "print(f'{$A/$L:.2f}')")x"

echo "-- 2. 1,000 changed files: git push through api vs update_repo_files over stdio"
WC="$WORK/c-api"
mapfile -t FILES < <(cd "$WC" && git ls-files 'generated/*' | head -1000)
push_times=""; mcp_times=""
for r in $(seq 1 "$ROUNDS"); do
  for f in "${FILES[@]}"; do echo "// pushed round $r" >> "$WC/$f"; done
  git -C "$WC" commit --quiet -am "push round $r"
  start=$(now); git -C "$WC" -c credential.helper= push --quiet origin main; t=$(secs "$start" "$(now)")
  push_times="$push_times $t"
  # The same files, each grown by a line of the same length, through the MCP tool.
  t2=$(python3 - "$BIN" "$DATA" "$ID" "$r" "$WC" "${FILES[@]}" <<'PY'
import json, os, subprocess, sys, time
bin_, data, rid, rnd, wc, files = *sys.argv[1:6], sys.argv[6:]
ops = []
for f in files:
    path = os.path.join(wc, f)
    with open(path) as fh:
        content = fh.read()
    ops.append({"type": "write", "path": f, "content": content + f"// mcp    round {rnd}\n"})
p = subprocess.Popen([bin_, "--data-dir", data, "serve", "--repo", rid], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
def send(m): p.stdin.write(json.dumps(m) + "\n"); p.stdin.flush()
def recv(i):
    while True:
        m = json.loads(p.stdout.readline())
        if m.get("id") == i: return m
send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}})
recv(1)
send({"jsonrpc": "2.0", "method": "notifications/initialized"})
start = time.time()
send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "update_repo_files", "arguments": {"repo_id": rid, "operations": ops}}})
r = recv(2)
took = time.time() - start
assert not r["result"].get("isError"), r
p.stdin.close(); p.wait()
print(f"{took:.2f}")
PY
)
  mcp_times="$mcp_times $t2"
  git -C "$WC" -c credential.helper= pull --quiet --ff-only 2>/dev/null
  echo "round $r: git push $t s, update_repo_files $t2 s"
done
P=$(echo $push_times | median); M=$(echo $mcp_times | median)
echo "1,000 files: median git push ${P} s, update_repo_files ${M} s, ratio $(python3 -c "print(f'{$P/$M:.2f}')")x"
