#!/usr/bin/env bash
# The soak (issue 12): a release `lakehouse serve` with [queryd] memory_limit
# set, under mixed hostile + normal load on loopback; ends with the server up,
# peak RSS under the limit and every acknowledged write readable.
# Usage: bench/soak.sh [--duration SECS (600)] [--memory-limit SIZE (512MiB)]
#                      [--rss-limit-mib N (2048)] [--hostile-threads N (2)]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec "$target/release/soak" --lakehouse "$target/release/lakehouse" "$@"
