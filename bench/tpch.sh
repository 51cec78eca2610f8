#!/usr/bin/env bash
# TPC-H SF1 through the lakehouse API vs DuckDB and DataFusion-python.
# Installs the peers, generates the data once (bench/data/tpch-sf1), builds
# release, then runs bench/src/bin/tpch.rs.
# Usage: bench/tpch.sh [--runs N] [--skip-peers]
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${LAKEHOUSE_SHARED:-../shared}"
pip install -q -r "$shared/bench/requirements.txt" 2>/dev/null \
  || pip install -q duckdb==2.0.0 datafusion==55.0.0 pyarrow==26.0.1 tpchgen-cli==4.0.0
data=bench/data/tpch-sf1
if [ ! -f "$data/lineitem.parquet" ]; then
  mkdir -p "$data"
  tpchgen-cli parquet -s 1 --output-dir "$data"
fi
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec "$target/release/tpch" --lakehouse "$target/release/lakehouse" --data "$data" \
  --peers "$shared/bench/peers_tpch.py" "$@"
