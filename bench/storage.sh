#!/usr/bin/env bash
# Storage benchmark: 1 GiB PUT/GET through the API vs the same bytes on disk.
# Usage: bench/storage.sh [--size-mib N] [--runs N (default 6, even: half the rounds start with the API)] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec "$target/release/storage" --lakehouse "$target/release/lakehouse" "$@"
