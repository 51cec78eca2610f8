#!/usr/bin/env bash
# An index that follows a dataset (issue 18), in one run: 1M x 128 vectors
# (gen_vectors.py, l2) written as Parquet and ingested into a fresh release
# `lakehouse serve`; the time from creating the index on the dataset to its
# acknowledged catch-up next to hnswlib's build of the same vectors (same M,
# ef_construction, every core); then SQL `vector_search` joined with the
# dataset, p50/p99 over HTTP, next to DuckDB's exact search in process.
# Usage: bench/dataset_index.sh [--n 1000000] [--rounds 3] [--m 16]
#        [--ef-construction 100] [--queries 200] [--ef 64 --ef 200 ...]
# Env: SHARED_DIR (default ../shared), PYTHON (default python3), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SHARED_DIR:-../shared}"
py="${PYTHON:-python3}"
target="${CARGO_TARGET_DIR:-target}"

n=1000000 rounds=3 m=16 efc=100 queries=200 efs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --m) m="$2"; shift 2 ;;
    --ef-construction) efc="$2"; shift 2 ;;
    --queries) queries="$2"; shift 2 ;;
    --ef) efs+=(--ef "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# numpy, hnswlib and duckdb at the versions pinned in requirements.txt, in a
# venv under bench/data when missing (as bench/ann.sh does).
if ! "$py" -c "import hnswlib, numpy, duckdb" 2>/dev/null; then
  venv=bench/data/venv
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  py="$venv/bin/python"
  if ! "$py" -c "import hnswlib, numpy, duckdb" 2>/dev/null; then
    # shellcheck disable=SC2046
    "$py" -m pip install -q $(grep -E '^(hnswlib|numpy|duckdb)\b' "$shared/bench/requirements.txt")
  fi
fi

data="bench/data/ann-$n"
[ -f "$data/meta.json" ] ||
  "$py" "$shared/bench/gen_vectors.py" "$data" --n "$n" --nq 200 --dim 128 --metric l2

cargo build --release -q -p lakehouse -p lakehouse-bench --bins

echo "== $data ($(uptime | sed 's/.*load average/load average/'))"
"$target/release/dataset_index" --lakehouse "$target/release/lakehouse" --data "$data" \
  --rounds "$rounds" --m "$m" --ef-construction "$efc" --queries "$queries" --python "$py" "${efs[@]}"
