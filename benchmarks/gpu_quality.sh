#!/usr/bin/env bash
# The quality benchmark of one dataset on a GPU machine, in one call:
#   1. (MULTI_GPU_SEEDS > 0 and >= 2 GPUs) LLaDARec on all GPUs (RecBole's DDP path), alone on the machine;
#   2. then two streams side by side: the LLaDARec seeds on LLADA_GPU, LLADA_JOBS at a time, then the quality /
#      decode-time trade-off on the first seed's checkpoint; the baselines on BASELINE_GPU, BASELINE_JOBS at a time.
# Every finished run lands in WORK_DIR/results/<dataset>_runs.csv and the summary <dataset>.{md,csv} is rebuilt,
# so a call cut short still returns what finished (tar WORK_DIR/results).
#
#   bash benchmarks/gpu_quality.sh DATASET WORK_DIR
#
# Environment (defaults in brackets):
#   DATA_PATH          folder holding DATASET/ [dataset_configs' data_path]
#   LLADA_OVERRIDES    --key=value for LLaDARec runs only (SID source, --epochs=N so the cosine ends in time) []
#   LLADA_LABEL        the LLaDARec runs' name in the tables, e.g. for a second config [LLaDARec]
#   BASELINE_OVERRIDES --key=value for baseline runs only (e.g. --epochs=50 as an epoch cap) []
#   BASELINE_LABEL     the baseline runs' name in the tables, with a single model in BASELINES [the model's name]
#   EXTRA_OVERRIDES    --key=value for every run []
#   LLADA_SEEDS        LLaDARec seeds on one GPU [1], LLADA_JOBS of them at once [1];  SEEDS: baseline seeds [3]
#   FIRST_SEED         the first seed of every stream [2024]
#   MULTI_GPU_SEEDS    LLaDARec seeds on the MULTI_GPUS, run first [0]; with LLADA_SEEDS > 0 too, multi_gpu.py
#                      then compares the first seed's two runs (multi_gpu_<dataset>.{md,csv})
#   MULTI_GPUS         GPU indices of the multi-GPU runs, comma separated [all]
#   BASELINES          [SASRec GRU4Rec BERT4Rec FMLPRec];  BASELINE_JOBS: baseline runs at once [4]
#   LLADA_GPU / BASELINE_GPU  GPU index of each stream [0 / 1 if there are two GPUs, else 0]
#   (GPU indices are the machine's: leave CUDA_VISIBLE_DEVICES unset, each run sets its own)
#   TRADEOFF_STEPS     T values of the trade-off, "" to skip it [1,2,3,4]
#   PYTHON             interpreter [python3]
set -uo pipefail
dataset=${1:?usage: gpu_quality.sh DATASET WORK_DIR}
work=${2:?usage: gpu_quality.sh DATASET WORK_DIR}
PYTHON=${PYTHON:-python3}
n_gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
llada_gpu=${LLADA_GPU:-0}
baseline_gpu=${BASELINE_GPU:-$((n_gpus > 1 ? 1 : 0))}
multi_gpus=${MULTI_GPUS:-$(seq -s, 0 $((n_gpus - 1)))}
n_multi=$(tr ',' '\n' <<< "$multi_gpus" | wc -l)
first_seed=${FIRST_SEED:-2024}
mkdir -p "$work/logs" "$work/results"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2

common=(--dataset="$dataset" --show_progress=False ${DATA_PATH:+--data_path="$DATA_PATH"} ${EXTRA_OVERRIDES:-})
llada=(--sid_cache_dir="$work/sid_cache" ${LLADA_OVERRIDES:-} ${LLADA_LABEL:+"--label=$LLADA_LABEL"})

merge_runs() {  # every run writes its own folder; merge them and rebuild the summary, one stream at a time
  flock "$work/merge.lock" "$PYTHON" - "$work" "$dataset" <<'EOF'
import csv, os, sys
from pathlib import Path
work, dataset = Path(sys.argv[1]), sys.argv[2]
rows, header = [], {}
for runs in sorted(work.glob(f"runs/*/{dataset}_runs.csv")):
    with open(runs, newline="") as f:
        reader = csv.DictReader(f)
        header.update(dict.fromkeys(reader.fieldnames))  # the union, in order: runs of older commits lack columns
        rows += list(reader)
if header:
    target = work / "results" / f"{dataset}_runs.csv"
    with open(f"{target}.tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(header), restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(f"{target}.tmp", target)
EOF
  flock "$work/merge.lock" "$PYTHON" benchmarks/quality.py --dataset="$dataset" --summary_only \
    --results_dir="$work/results" > "$work/logs/summary.log" 2>&1
}

run_quality() {  # NAME GPUS ARGS...: one quality.py invocation into runs/NAME, logged to logs/NAME.log
  local name=$1 gpus=$2
  shift 2
  CUDA_VISIBLE_DEVICES=$gpus "$PYTHON" benchmarks/quality.py "${common[@]}" --results_dir="$work/runs/$name" \
    --checkpoint_dir="$work/saved/$name" "$@" > "$work/logs/$name.log" 2>&1 \
    || echo "$name failed: see logs/$name.log"
  merge_runs
}

for ((i = 0; i < ${MULTI_GPU_SEEDS:-0}; i++)); do
  seed=$((first_seed + i))
  if ((n_multi < 2)); then echo "one GPU: no multi-GPU run"; break; fi
  echo "== $dataset: LLaDARec on GPUs $multi_gpus, seed $seed $(date -u +%T)"
  run_quality "LLaDARec-${n_multi}gpus-$seed" "$multi_gpus" --models=LLaDARec --seeds=1 --first_seed=$seed \
    --nproc="$n_multi" "${llada[@]}"
done

llada_stream() {  # the seeds share one semantic-ID build: the SID cache's lock makes the others wait for it
  for ((i = 0; i < ${LLADA_SEEDS:-1}; i++)); do
    seed=$((first_seed + i))
    while (($(jobs -rp | wc -l) >= ${LLADA_JOBS:-1})); do wait -n; done
    echo "== $dataset: LLaDARec seed $seed on GPU $llada_gpu $(date -u +%T)"
    run_quality "LLaDARec-$seed" "$llada_gpu" --models=LLaDARec --seeds=1 --first_seed=$seed "${llada[@]}" &
  done
  wait
  checkpoint=$(ls "$work/saved/LLaDARec-$first_seed"/LLaDARec-*.pth 2>/dev/null | head -n 1)
  if [ -n "${TRADEOFF_STEPS-1,2,3,4}" ] && [ -n "$checkpoint" ]; then
    echo "== $dataset: trade-off $(date -u +%T)"
    CUDA_VISIBLE_DEVICES=$llada_gpu "$PYTHON" benchmarks/tradeoff.py --checkpoint "$checkpoint" \
      ${DATA_PATH:+--data_path="$DATA_PATH"} --out_dir "$work/results" --gen_steps="${TRADEOFF_STEPS-1,2,3,4}" \
      --beams=10,20,50 > "$work/logs/tradeoff.log" 2>&1 || echo "tradeoff.py failed: see logs/tradeoff.log"
  fi
}

baseline_stream() {  # every model x seed, at most BASELINE_JOBS at once (small models share a GPU well)
  for ((i = 0; i < ${SEEDS:-3}; i++)); do
    seed=$((first_seed + i))
    for model in ${BASELINES:-SASRec GRU4Rec BERT4Rec FMLPRec}; do
      while (($(jobs -rp | wc -l) >= ${BASELINE_JOBS:-4})); do wait -n; done
      echo "== $dataset: $model seed $seed on GPU $baseline_gpu $(date -u +%T)"
      run_quality "$model-$seed" "$baseline_gpu" --models="$model" --seeds=1 --first_seed=$seed \
        ${BASELINE_OVERRIDES:-} ${BASELINE_LABEL:+"--label=$BASELINE_LABEL"} &
    done
  done
  wait
}

llada_stream &
baseline_stream &
wait

multi_log="$work/logs/LLaDARec-${n_multi}gpus-$first_seed.log" single_log="$work/logs/LLaDARec-$first_seed.log"
if ((${MULTI_GPU_SEEDS:-0} > 0 && ${LLADA_SEEDS:-1} > 0)) && [ -f "$multi_log" ] && [ -f "$single_log" ]; then
  "$PYTHON" benchmarks/multi_gpu.py --dataset="$dataset" --results_dir="$work/results" --single=LLaDARec \
    --multi="LLaDARec ($n_multi GPUs)" --single_log="$single_log" --multi_log="$multi_log" \
    > "$work/logs/multi_gpu.log" 2>&1 || echo "multi_gpu.py failed: see logs/multi_gpu.log"
fi
echo "== $dataset: done $(date -u +%T)"
summary="$work/results/$dataset.md"
if [ -f "$summary" ]; then cat "$summary"; fi
