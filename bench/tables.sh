#!/usr/bin/env bash
# Tables benchmark: 2,000 appends of 1,000 rows, a selective and a full-scan query
# before and after compaction, and start-up with many datasets × versions; next to
# the Python deltalake package (delta-rs) + polars doing the same in the same run.
# Usage: bench/tables.sh [--runs N] [--appends N] [--rows N]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check deltalake==1.6.6 polars==2.1.0 pyarrow==26.0.1
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec "$target/release/tables" --lakehouse "$target/release/lakehouse" --peers bench/tables_peer.py "$@"
