#!/usr/bin/env bash
# The kernel-scale benchmark: memory, restarts, a second process, ranked latency and
# line search against rg on Debian's linux-source-6.12, plus twenty repos under
# `serve --index-memory 1GiB` when serve has that flag. Prints one table (markdown).
#
# Usage: scripts/bench-kernel.sh [SCRATCH]   (default: /tmp/bench-kernel)
#   SCRATCH holds the untarred tree (kept and reused) and the run's data directories
#   (made anew each run). Needs rg, xz and about 12 GB free in SCRATCH.
#   KERNEL_ROUNDS (default 7), KERNEL_RANKED_QUERIES (default 100) and KERNEL_MULTI
#   (auto | never | always | only: the twenty repos alone) are passed to the bench (see benches/kernel.rs).
# A benchmark, not a test, never run in CI: it builds the ranked index three times
# (first process, second process, restart), ten minutes or more on 2 quiet cores and
# nearly an hour on a loaded machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-/tmp/bench-kernel}"
pkg=linux-source-6.12
tarball="/usr/src/$pkg.tar.xz"

mkdir -p "$scratch"
scratch="$(cd "$scratch" && pwd)"
tree="$scratch/$pkg"

if [ ! -f "$tarball" ] && [ ! -d "$tree" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y "$pkg"
    else
        # Without root: fetch the package and unpack it into the scratch directory.
        (cd "$scratch" && apt-get download "$pkg" && dpkg -x "$pkg"_*.deb "$scratch/deb")
        tarball="$scratch/deb/usr/src/$pkg.tar.xz"
    fi
fi

if [ ! -d "$tree" ]; then
    echo "untarring $tarball into $scratch" >&2
    rm -rf "$scratch/partial"
    mkdir -p "$scratch/partial"
    tar -xJf "$tarball" -C "$scratch/partial"
    mv "$scratch/partial/$pkg" "$tree"
    rm -rf "$scratch/partial"
fi

# Debian appends `/*` and `!/debian/` to the tree's .gitignore, which ignores every
# file of the kernel itself; drop them so the import and rg see the sources.
sed -i -e '/^\/\*$/d' -e '/^!\/debian\/$/d' "$tree/.gitignore"

echo "building (release) …" >&2
KERNEL_CORPUS="$tree" KERNEL_WORK="$scratch/work" cargo bench --bench kernel
