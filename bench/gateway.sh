#!/usr/bin/env bash
# Gateway overhead: storaged alone vs the same requests through a gateway.
# Usage: bench/gateway.sh [--size-mib N] [--runs N] [--requests N]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec "$target/release/gateway" --lakehouse "$target/release/lakehouse" "$@"
