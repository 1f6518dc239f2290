#!/usr/bin/env bash
# One GPU session for Amazon 2014 Beauty: the speed benchmark on the idle GPU, then LLaDARec alone and its quality /
# decode-time trade-off, then the four baselines, one seed at a time. The summary is refreshed after every phase,
# so a call cut short still returns what finished (tar WORK_DIR/results).
#
#   bash benchmarks/h200_beauty.sh WORK_DIR
#
# Environment (defaults in brackets):
#   BEAUTY_DATA       folder holding Beauty/ [.carry/data/amazon2014]
#   BEAUTY_EMBEDDINGS item text embeddings, <prefix>.npy + <prefix>.ids [.carry/sid_embeddings/beauty]
#                     (all-MiniLM-L6-v2 on the attributes text, computed on a machine that has the encoder:
#                     python benchmarks/sid_speed.py --datasets beauty --save-embeddings DIR)
#   LLADA_BUDGET_S    LLaDARec training wall-clock budget in seconds [240]
#   BASELINE_EPOCHS   epoch cap of each baseline run [50]
#   SEEDS             baseline seeds [3]; LLaDARec runs one seed
#   LLADA_OVERRIDES   --key=value for LLaDARec only, e.g. --epochs=40 so the cosine schedule ends within the budget
#   PYTHON            interpreter [python3]
#   SPEED_FLAGS       extra flags for speed.py [none]; EXTRA_OVERRIDES: --key=value for every run [none]
# Results: WORK_DIR/results (speed, Beauty summary, trade-off), WORK_DIR/logs.
set -uo pipefail
work=${1:?usage: h200_beauty.sh WORK_DIR}
data=${BEAUTY_DATA:-.carry/data/amazon2014}
embeddings=${BEAUTY_EMBEDDINGS:-.carry/sid_embeddings/beauty}
budget=${LLADA_BUDGET_S:-240}
baseline_epochs=${BASELINE_EPOCHS:-50}
seeds=${SEEDS:-3}
extra=${EXTRA_OVERRIDES:-}
mkdir -p "$work/logs" "$work/results"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PYTHON=${PYTHON:-python3}

merge_runs() {
  "$PYTHON" - "$work" <<'EOF'
import csv, sys
from pathlib import Path
work = Path(sys.argv[1])
rows, header = [], None
for runs in sorted(work.glob("runs/*/Beauty_runs.csv")):
    with open(runs, newline="") as f:
        reader = csv.DictReader(f)
        header = header or reader.fieldnames
        rows += list(reader)
if header:
    with open(work / "results" / "Beauty_runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
EOF
  "$PYTHON" benchmarks/quality.py --dataset=Beauty --summary_only --results_dir="$work/results" \
    > "$work/logs/summary.log" 2>&1
}

echo "== speed (idle GPU) $(date -u +%T)"
timeout 150 "$PYTHON" benchmarks/speed.py --out_dir "$work/results" ${SPEED_FLAGS:-} > "$work/logs/speed.log" 2>&1 \
  || echo "speed.py failed: see logs/speed.log"

# LLaDARec alone: sharing the GPU and CPUs with 12 baseline runs slowed its epochs 3.5x (2026-11-28 session).
echo "== Beauty: LLaDARec $(date -u +%T)"
common="--dataset=Beauty --data_path=$data --show_progress=False"
"$PYTHON" benchmarks/quality.py $common --models=LLaDARec --seeds=1 --results_dir="$work/runs/LLaDARec" \
  --checkpoint_dir="$work/saved/LLaDARec" --item_embedding=file --sid_embedding_file="$embeddings.npy" \
  --sid_embedding_ids_file="$embeddings.ids" --sid_cache_dir="$work/sid_cache" --train_time_budget="$budget" \
  $extra ${LLADA_OVERRIDES:-} > "$work/logs/LLaDARec.log" 2>&1 || echo "LLaDARec run failed: see logs/LLaDARec.log"
merge_runs

echo "== trade-off $(date -u +%T)"
checkpoint=$(ls "$work"/saved/LLaDARec/LLaDARec-*.pth 2>/dev/null | head -n 1)
if [ -n "$checkpoint" ]; then
  "$PYTHON" benchmarks/tradeoff.py --checkpoint "$checkpoint" --data_path="$data" --out_dir "$work/results" \
    --gen_steps=1,2,4 --beams=10,20,50 > "$work/logs/tradeoff.log" 2>&1 || echo "tradeoff.py failed"
fi

# Baselines: the four models of one seed at a time (small models: four processes share the GPU well).
for ((i = 0; i < seeds; i++)); do
  seed=$((2024 + i))
  echo "== Beauty: baselines, seed $seed $(date -u +%T)"
  for model in SASRec GRU4Rec BERT4Rec FMLPRec; do
    "$PYTHON" benchmarks/quality.py $common --models=$model --seeds=1 --first_seed=$seed \
      --results_dir="$work/runs/$model-$seed" --checkpoint_dir="$work/saved/$model-$seed" \
      --epochs="$baseline_epochs" $extra > "$work/logs/$model-$seed.log" 2>&1 &
  done
  wait
  merge_runs
done

echo "== summary $(date -u +%T)"
cat "$work/results/Beauty.md" 2>/dev/null
