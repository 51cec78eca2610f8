#!/usr/bin/env bash
# ANN benchmark: the lakehouse HNSW engine (in-process) vs hnswlib and faiss HNSW on
# the same gen_vectors.py data (100k x 128, l2 and cosine), in one run.
# Usage: bench/ann.sh [--m 16] [--ef-construction 200] [--efs 16,32,64,128,256] [--threads 1]
# Env: SHARED_DIR (default ../shared), PYTHON (default python3), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SHARED_DIR:-../shared}"
py="${PYTHON:-python3}"
target="${CARGO_TARGET_DIR:-target}"

m=16 efc=200 efs=16,32,64,128,256 threads=1
while [ $# -gt 0 ]; do
  case "$1" in
    --m) m="$2"; shift 2 ;;
    --ef-construction) efc="$2"; shift 2 ;;
    --efs) efs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# Peers: only hnswlib, faiss-cpu and numpy are needed, at the versions pinned in
# requirements.txt; installed into a venv under bench/data when missing.
if ! "$py" -c "import hnswlib, faiss, numpy" 2>/dev/null; then
  venv=bench/data/venv
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  py="$venv/bin/python"
  if ! "$py" -c "import hnswlib, faiss, numpy" 2>/dev/null; then
    # shellcheck disable=SC2046
    "$py" -m pip install -q $(grep -E '^(hnswlib|faiss-cpu|numpy)\b' "$shared/bench/requirements.txt")
  fi
fi

for metric in l2 cosine; do
  dir="bench/data/ann-$metric"
  [ -f "$dir/meta.json" ] || "$py" "$shared/bench/gen_vectors.py" "$dir" --metric "$metric"
done

cargo build --release -q --workspace --bins

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for metric in l2 cosine; do
  dir="bench/data/ann-$metric"
  echo "== $metric ($(uptime | sed 's/.*load average/load average/'))"
  "$target/release/ann" --data "$dir" --m "$m" --ef-construction "$efc" --efs "$efs" \
    --threads "$threads" | tee "$out/$metric.ours"
  "$py" "$shared/bench/peers_ann.py" "$dir" --m "$m" --ef-construction "$efc" --efs "$efs" \
    --threads "$threads" | tee "$out/$metric.peers"
done

"$py" - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def parse(path):
    rows = {}
    for line in open(path):
        kv = dict(re.findall(r"(\S+?)=(\S+)", line))
        name = kv.get("engine") or kv.get("peer")
        rec = next(float(v) for k, v in kv.items() if k.startswith("recall@"))
        rows.setdefault(name, []).append((int(kv["ef"]), rec, float(kv["qps"]), float(kv["build_s"])))
    return rows
print("\n== summary (smallest ef with recall >= 0.95 per engine)")
for metric in ("l2", "cosine"):
    rows = {**parse(f"{out}/{metric}.ours"), **parse(f"{out}/{metric}.peers")}
    best = {}
    for name, rs in rows.items():
        ok = sorted(r for r in rs if r[1] >= 0.95)
        if ok:
            best[name] = ok[0]
    for name, (ef, rec, qps, build) in best.items():
        print(f"{metric}: {name:9s} ef={ef} recall={rec:.4f} qps={qps:.0f} build_s={build:.2f}")
    ours = best.get("lakehouse")
    for peer in ("hnswlib", "faiss"):
        if ours and peer in best:
            p = best[peer]
            print(f"{metric}: lakehouse/{peer}: qps ratio {ours[2] / p[2]:.2f}x, "
                  f"build time ratio {ours[3] / p[3]:.2f}x")
PY
