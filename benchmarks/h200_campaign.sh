#!/usr/bin/env bash
# Session 3's benchmark campaign on one 4-GPU H200 machine (nvidia-h200-x4), in two device calls that each end
# within DEADLINE_S seconds and keep whatever finished (see gpu_sessions.md for what each call produced):
#
#   bash benchmarks/h200_campaign.sh quality WORK   # every stream at once, one per GPU:
#       GPU 0  Beauty LLaDARec, 3 seeds at once         GPU 1  Beauty SASRec and BERT4Rec, 3 seeds
#       GPU 2  Scientific collaborative SIDs, then       GPU 3  Scientific SASRec/BERT4Rec/GRU4Rec seed 1,
#              Scientific LLaDARec seed 1; ml-100k              Beauty GRU4Rec seed 3 and FMLPRec seeds 2-3
#              baselines, 3 seeds
#   bash benchmarks/h200_campaign.sh scaling WORK   # needs the SID cache of the quality call in WORK/scientific:
#       GPU 0  Scientific LLaDARec seed 2 alone          GPUs 2+3  the same run on two GPUs (DDP)
#       GPU 1  anomaly_mode.py and speed.py on an otherwise idle GPU, then Scientific LLaDARec seed 3
#
# Environment: BEAUTY_DATA (folder holding Beauty/), BEAUTY_EMBEDDINGS (path prefix of the .npy/.ids text
# embeddings; the GPU machine has no encoder weights), SCIENTIFIC_DATA (folder holding Scientific/),
# DEADLINE_S [500]. Hyperparameters are in benchmarks/configs/*.yaml; this file only places runs on GPUs.
set -uo pipefail
part=${1:?usage: h200_campaign.sh quality|scaling WORK}
work=${2:?usage: h200_campaign.sh quality|scaling WORK}
end=$((SECONDS + ${DEADLINE_S:-500}))
configs=benchmarks/configs
mkdir -p "$work"

beauty_llada=(--config_files=$configs/LLaDARec-Beauty-h200.yaml --item_embedding=file
              --sid_embedding_file="$BEAUTY_EMBEDDINGS.npy" --sid_embedding_ids_file="$BEAUTY_EMBEDDINGS.ids")
scientific_llada=--config_files=$configs/LLaDARec-Scientific-h200.yaml

left() { echo $((end - SECONDS > 1 ? end - SECONDS : 1)); }  # seconds to the deadline

stream() {  # NAME DATASET VAR=VALUE...: one gpu_quality.sh call, cut at the deadline, logged to WORK/NAME.log
  local name=$1 dataset=$2
  shift 2
  env TRADEOFF_STEPS= "$@" timeout "$(left)" bash benchmarks/gpu_quality.sh "$dataset" "$work/$dataset" \
    > "$work/$name.log" 2>&1
}

case $part in
quality)
  stream beauty-llada Beauty DATA_PATH="$BEAUTY_DATA" LLADA_GPU=0 LLADA_SEEDS=3 LLADA_JOBS=3 SEEDS=0 \
    LLADA_OVERRIDES="${beauty_llada[*]}" &
  stream beauty-baselines Beauty DATA_PATH="$BEAUTY_DATA" LLADA_SEEDS=0 BASELINE_GPU=1 SEEDS=3 BASELINE_JOBS=6 \
    BASELINES="SASRec BERT4Rec" BASELINE_OVERRIDES=--config_files=$configs/baselines-h200.yaml &
  stream beauty-baselines-rest Beauty DATA_PATH="$BEAUTY_DATA" LLADA_SEEDS=0 BASELINE_GPU=3 FIRST_SEED=2025 \
    SEEDS=2 BASELINE_JOBS=3 BASELINES="FMLPRec GRU4Rec" BASELINE_OVERRIDES=--config_files=$configs/baselines-h200.yaml &
  stream scientific-baselines Scientific DATA_PATH="$SCIENTIFIC_DATA" LLADA_SEEDS=0 BASELINE_GPU=3 SEEDS=1 \
    BASELINE_JOBS=3 BASELINES="SASRec BERT4Rec GRU4Rec" \
    BASELINE_OVERRIDES=--config_files=$configs/baselines-Scientific-h200.yaml &
  stream ml-100k-baselines ml-100k LLADA_SEEDS=0 BASELINE_GPU=2 SEEDS=3 BASELINE_JOBS=4 \
    BASELINE_OVERRIDES=--config_files=$configs/baselines-h200.yaml &
  (
    mkdir -p "$work/Scientific"
    CUDA_VISIBLE_DEVICES=2 timeout "$(left)" python3 -m recbole_llada.tokenize --dataset=Scientific \
      --data_path="$SCIENTIFIC_DATA" $scientific_llada --sid_cache_dir="$work/Scientific/sid_cache" \
      --show_progress=False --report="$work/sid_Scientific_collaborative_h200.md" > "$work/scientific-sids.log" 2>&1
    stream scientific-llada Scientific DATA_PATH="$SCIENTIFIC_DATA" LLADA_GPU=2 LLADA_SEEDS=1 SEEDS=0 \
      LLADA_OVERRIDES=$scientific_llada
  ) &
  ;;
scaling)
  stream scientific-1gpu Scientific DATA_PATH="$SCIENTIFIC_DATA" LLADA_GPU=0 FIRST_SEED=2025 LLADA_SEEDS=1 \
    SEEDS=0 LLADA_OVERRIDES=$scientific_llada &
  stream scientific-2gpus Scientific DATA_PATH="$SCIENTIFIC_DATA" MULTI_GPUS=2,3 FIRST_SEED=2025 MULTI_GPU_SEEDS=1 \
    LLADA_SEEDS=0 SEEDS=0 LLADA_OVERRIDES=$scientific_llada &
  (
    export CUDA_VISIBLE_DEVICES=1
    timeout "$(left)" python3 benchmarks/anomaly_mode.py --scale=scientific --device=cuda \
      --out_dir="$work/results" > "$work/anomaly_mode.log" 2>&1
    timeout "$(left)" python3 benchmarks/speed.py --out_dir "$work/results" > "$work/speed.log" 2>&1
    unset CUDA_VISIBLE_DEVICES
    stream scientific-seed3 Scientific DATA_PATH="$SCIENTIFIC_DATA" LLADA_GPU=1 FIRST_SEED=2026 LLADA_SEEDS=1 \
      SEEDS=0 LLADA_OVERRIDES=$scientific_llada
  ) &
  wait
  logs=$work/Scientific/logs
  python3 benchmarks/multi_gpu.py --dataset=Scientific --results_dir="$work/Scientific/results" --single=LLaDARec \
    --multi="LLaDARec (2 GPUs)" --single_log="$logs/LLaDARec-2025.log" --multi_log="$logs/LLaDARec-2gpus-2025.log" \
    > "$work/multi_gpu.log" 2>&1 || echo "multi_gpu.py failed: see multi_gpu.log"
  ;;
*)
  echo "unknown part: $part (quality or scaling)" >&2
  exit 2
  ;;
esac
wait
echo "== $part: done $(date -u +%T)"
