#!/usr/bin/env bash
# Ingest benchmark: TPC-H SF1 lineitem.csv through the API vs DuckDB COPY and pyarrow.
# Usage: bench/ingest.sh [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check duckdb==2.0.0 pyarrow==26.0.1 tpchgen-cli==4.0.0
if [ ! -f bench/data/tpch-csv/lineitem.csv ]; then
  tpchgen-cli csv -s 1 --tables lineitem --output-dir bench/data/tpch-csv
fi
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec "$target/release/ingest" --lakehouse "$target/release/lakehouse" \
  --csv bench/data/tpch-csv/lineitem.csv --peers ../shared/bench/peers_ingest.py "$@"
