#!/usr/bin/env bash
# Result-fetch benchmark (issue 17): a 10-million-row result over Flight SQL
# (ADBC), PostgreSQL (psycopg) and HTTP Arrow, next to DuckDB's in-process
# fetch of the same query, in one run. Medians of --runs runs.
# Usage: bench/fetch.sh [--rows N] [--runs N] [--pg-runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check duckdb==2.0.0 pyarrow==26.0.1 \
  'psycopg[binary]==3.3.9' adbc-driver-flightsql==1.13.0 adbc-driver-manager==1.13.0
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q --workspace --bins
exec python3 bench/fetch.py --lakehouse "$target/release/lakehouse" "$@"
