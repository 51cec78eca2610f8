#!/usr/bin/env bash
# SQL write statements on TPC-H SF1 lineitem: a DELETE of ~1 % of the rows
# (l_orderkey range) and an UPDATE of one column on ~10 % (l_shipdate before a
# date), through POST /query/sql, next to DuckDB doing the same statements on its
# own database file loaded from the same Parquet in the same run. Every run starts
# from a fresh copy (new data dir + ingest; new DuckDB file); only the statement
# is timed. Generates the data once (bench/data/tpch-sf1, shared with tpch.sh),
# builds release, then runs bench/src/bin/dml.rs.
# Usage: bench/dml.sh [--runs N] [--only delete|update] [--no-peers]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check duckdb==2.0.0 pyarrow==26.0.1 tpchgen-cli==4.0.0
data=bench/data/tpch-sf1
if [ ! -f "$data/lineitem.parquet" ]; then
  mkdir -p "$data"
  tpchgen-cli parquet -s 1 --output-dir "$data"
fi
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec "$target/release/dml" --lakehouse "$target/release/lakehouse" --data "$data" \
  --peers bench/dml_peer.py "$@"
