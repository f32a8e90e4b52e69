#!/usr/bin/env bash
# Build the line-search benchmark corpus: the crate sources of the cargo registry
# (this project's dependencies) plus those of a scratch manifest of large crates, fetched
# into a private CARGO_HOME, copied to one fixed directory.
#
# Usage: scripts/bench-corpus.sh [DEST]   (default: target/bench-corpus)
# Then:  BENCH_CORPUS=target/bench-corpus cargo bench --bench line_search
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-target/bench-corpus}"
scratch="${BENCH_FETCH_DIR:-/tmp/bench-fetch}"
cargo_home="${BENCH_CARGO_HOME:-/tmp/bench-cargo}"

mkdir -p "$scratch/src"
cat > "$scratch/Cargo.toml" <<'TOML'
[package]
name = "bench-fetch"
version = "0.0.0"
edition = "2021"

[dependencies]
datafusion = "*"
wasmtime = "*"
gix = "*"
tantivy = "*"
sqlparser = "*"
wgpu = "*"
naga = "*"
bevy_ecs = "*"
TOML
echo 'fn main() {}' > "$scratch/src/main.rs"
CARGO_HOME="$cargo_home" cargo fetch --manifest-path "$scratch/Cargo.toml"

mkdir -p "$dest"
for src in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ "$cargo_home"/registry/src/*/; do
    for krate in "$src"*/; do
        name="$(basename "$krate")"
        [ -e "$dest/$name" ] || cp -r "$krate" "$dest/$name"
    done
done
echo "corpus: $dest: $(find "$dest" -type f | wc -l) files, $(du -sh "$dest" | cut -f1)"
