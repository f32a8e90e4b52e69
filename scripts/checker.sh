#!/usr/bin/env bash
# The many-process checker's long form: every kind of process on one data directory,
# seeded random writes through each, SIGKILLs, and the whole store checked at the end.
#   scripts/checker.sh [SECONDS] [SEED]      (default: 1800 s, a fresh seed)
# On failure it prints the seed and where the history of operations was saved;
# `CHECKER_SEED=<seed>` replays the same sequence.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKER_SECONDS="${1:-1800}"
[ -n "${2:-}" ] && export CHECKER_SEED="$2"
exec cargo test --release --test it checker::every_kind -- --nocapture
