#!/usr/bin/env bash
# Adding vectors over HTTP vs hnswlib's build, in one run: 20k x 384 (cosine)
# and 100k x 128 (l2) from gen_vectors.py, each added as JSON bodies and as
# Arrow IPC bodies to a fresh release `lakehouse serve`, next to the engine
# in-process and hnswlib (same M, ef_construction, every core).
# Usage: bench/vectors_add.sh [--rounds 3] [--batch 10000] [--m 16] [--ef-construction 200]
# Env: SHARED_DIR (default ../shared), PYTHON (default python3), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SHARED_DIR:-../shared}"
py="${PYTHON:-python3}"
target="${CARGO_TARGET_DIR:-target}"

rounds=3 batch=10000 m=16 efc=200
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --m) m="$2"; shift 2 ;;
    --ef-construction) efc="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# hnswlib and numpy at the versions pinned in requirements.txt, in a venv
# under bench/data when missing (as bench/ann.sh does).
if ! "$py" -c "import hnswlib, numpy" 2>/dev/null; then
  venv=bench/data/venv
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  py="$venv/bin/python"
  if ! "$py" -c "import hnswlib, numpy" 2>/dev/null; then
    # shellcheck disable=SC2046
    "$py" -m pip install -q $(grep -E '^(hnswlib|numpy)\b' "$shared/bench/requirements.txt")
  fi
fi

[ -f bench/data/emb-384/meta.json ] ||
  "$py" "$shared/bench/gen_vectors.py" bench/data/emb-384 --n 20000 --dim 384 --metric cosine
[ -f bench/data/ann-l2/meta.json ] ||
  "$py" "$shared/bench/gen_vectors.py" bench/data/ann-l2 --metric l2

cargo build --release -q --workspace --bins

for data in emb-384 ann-l2; do
  echo "== $data ($(uptime | sed 's/.*load average/load average/'))"
  "$target/release/vectors_add" --lakehouse "$target/release/lakehouse" --data "bench/data/$data" \
    --rounds "$rounds" --batch "$batch" --m "$m" --ef-construction "$efc" --python "$py"
done
