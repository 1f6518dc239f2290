#!/usr/bin/env bash
# Session 3's benchmark campaign on one 4-GPU H200 machine (nvidia-h200-x4), in device calls that each end
# within DEADLINE_S seconds and keep whatever finished (gpu_sessions.md says what each call produced). Lesson of
# the first call: processes sharing a GPU are time-sliced, so three LLaDARec runs on one GPU each ran 3.3x slower
# than one alone; keep at most one LLaDARec and two small baselines per GPU.
#
#   bash benchmarks/history/h200_campaign.sh beauty WORK    # the Beauty seeds, the speed benchmark, Scientific's SIDs:
#       GPU 0  Beauty LLaDARec seed 1 alone, then anomaly_mode.py and speed.py on the idle GPU
#       GPU 1  Beauty LLaDARec seed 2, SASRec seeds 1-2       GPU 2  Beauty LLaDARec seed 3, SASRec seed 3,
#       GPU 3  Scientific collaborative SIDs, then Scientific          BERT4Rec seed 1
#              LLaDARec seed 1 with the time that is left
#   bash benchmarks/history/h200_campaign.sh finish WORK    # what the beauty part left unfinished:
#       GPU 0  Beauty SASRec seeds 1-2                       GPU 1  Beauty SASRec seed 3, BERT4Rec seed 1
#       GPU 2  Scientific SIDs, then LLaDARec seed 1         GPU 3  Scientific BERT4Rec seed 1, Beauty BERT4Rec seed 2
#   bash benchmarks/history/h200_campaign.sh single WORK    # session 4, one GPU (only nvidia-h200 was lent): runs
#       that need more than one 10-minute call, so start it with setsid (it outlives the call that starts it while
#       the machine stays warm) and collect WORK's results in the calls that follow. Three streams share the GPU:
#         Scientific LLaDARec seeds 1-3 (the full 12-epoch schedule), then ml-100k LLaDARec at the paper's size;
#         Scientific baselines seeds 2-3, two at a time;
#         Beauty BERT4Rec seed 3, then ml-100k BERT4Rec seeds 2-3 and FMLPRec seed 3.
#   bash benchmarks/history/h200_campaign.sh followup WORK  # what session 4 left, on one GPU and across calls like `single`:
#         ml-100k LLaDARec (paper size) seeds 2-3, then Scientific LLaDARec over 24 epochs (twice the schedule);
#         Scientific BERT4Rec seeds 2-3;
#         Scientific GRU4Rec and FMLPRec seed 3, then ml-100k SASRec at LLaDARec's size, 3 seeds.
#   bash benchmarks/history/h200_campaign.sh x2 WORK        # session 5, two GPUs (nvidia-h200-x2), started like `single`:
#       GPUs 0+1  Scientific LLaDARec seed 1 (DDP, the 12-epoch schedule), alone on the machine; then
#       GPU 0     Scientific LLaDARec seed 1 over 24 epochs, alone on its GPU: the one-GPU epoch times, and the
#                 longer schedule; then ml-100k SASRec at LLaDARec's size, 3 seeds
#       GPU 1     ml-100k LLaDARec (paper size) seeds 2-3, next to the Scientific baseline seeds still missing
#                 (BERT4Rec 2-3, GRU4Rec and FMLPRec 3)
#   bash benchmarks/history/h200_campaign.sh scaling WORK   # one GPU against two, both alone on their GPUs:
#       GPUs 0+1  Beauty LLaDARec seed 1 (DDP), then     GPU 2  Beauty LLaDARec seed 1 on one GPU
#                 Beauty BERT4Rec seed 3 on GPU 0        GPU 3  Scientific LLaDARec seed 2 (SIDs from the
#                                                               cache in WORK/Scientific/sid_cache, else built)
#
# Environment: BEAUTY_DATA (folder holding Beauty/), BEAUTY_EMBEDDINGS (path prefix of the .npy/.ids text
# embeddings; the GPU machine has no encoder weights), SCIENTIFIC_DATA (folder holding Scientific/),
# SCIENTIFIC_SID_CACHE (optional: a .tgz of Scientific/sid_cache/, the collaborative SIDs built in session 3,
# unpacked into WORK), ML100K_EMBEDDINGS (path prefix of ml-100k's text embeddings), DEADLINE_S [500]. Hyperparameters are in benchmarks/configs/*.yaml; this file only places runs on GPUs.
set -uo pipefail
part=${1:?usage: h200_campaign.sh beauty|finish|scaling|single|followup|x2 WORK}
work=${2:?usage: h200_campaign.sh beauty|finish|scaling|single|followup|x2 WORK}
end=$((SECONDS + ${DEADLINE_S:-500}))
configs=benchmarks/configs
mkdir -p "$work/results"
if [ -n "${SCIENTIFIC_SID_CACHE:-}" ]; then tar xzf "$SCIENTIFIC_SID_CACHE" -C "$work"; fi

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

beauty_baselines=(DATA_PATH="$BEAUTY_DATA" LLADA_SEEDS=0 BASELINE_OVERRIDES=--config_files=$configs/baselines-h200.yaml)
beauty_llada_stream=(DATA_PATH="$BEAUTY_DATA" LLADA_SEEDS=1 SEEDS=0 LLADA_OVERRIDES="${beauty_llada[*]}")
scientific_llada_stream=(DATA_PATH="$SCIENTIFIC_DATA" LLADA_SEEDS=1 SEEDS=0 LLADA_OVERRIDES=$scientific_llada)
scientific_baselines=(DATA_PATH="$SCIENTIFIC_DATA" LLADA_SEEDS=0
                      BASELINE_OVERRIDES=--config_files=$configs/baselines-Scientific-h200.yaml)
ml100k_baselines=(LLADA_SEEDS=0 BASELINE_OVERRIDES=--config_files=$configs/baselines-h200.yaml)
ml100k_llada=(--config_files=$configs/LLaDARec-ml-100k-h200.yaml --item_embedding=file
              --sid_embedding_file="${ML100K_EMBEDDINGS:-}.npy" --sid_embedding_ids_file="${ML100K_EMBEDDINGS:-}.ids")
ml100k_llada_stream=(LLADA_SEEDS=1 SEEDS=0 LLADA_OVERRIDES="${ml100k_llada[*]}" LLADA_LABEL="LLaDARec (paper size)")

scientific_sids_then_llada() {  # GPU: the collaborative SIDs, then LLaDARec seed 2024 in the time that is left
  mkdir -p "$work/Scientific"
  CUDA_VISIBLE_DEVICES=$1 OMP_NUM_THREADS=2 timeout "$(left)" python3 -m recbole_llada.tokenize --dataset=Scientific \
    --data_path="$SCIENTIFIC_DATA" $scientific_llada --sid_cache_dir="$work/Scientific/sid_cache" \
    --show_progress=False --report="$work/results/sid_Scientific_collaborative_h200.md" \
    > "$work/scientific-sids.log" 2>&1
  # what is left, less about two minutes for loading and the 50-beam test of 50,985 users
  local budget=$(($(left) - 130))
  if ((budget > 60)); then
    stream scientific-llada-2024 Scientific "${scientific_llada_stream[@]}" LLADA_GPU="$1" \
      LLADA_OVERRIDES="$scientific_llada --train_time_budget=$budget"
  fi
}

case $part in
single)
  (
    stream scientific-llada Scientific "${scientific_llada_stream[@]}" LLADA_SEEDS=3
    stream ml-100k-llada ml-100k "${ml100k_llada_stream[@]}"
  ) &
  stream scientific-baselines Scientific "${scientific_baselines[@]}" FIRST_SEED=2025 SEEDS=2 BASELINE_JOBS=2 \
    BASELINES="SASRec FMLPRec GRU4Rec BERT4Rec" &
  (
    stream beauty-bert4rec-3 Beauty "${beauty_baselines[@]}" FIRST_SEED=2026 SEEDS=1 BASELINES=BERT4Rec BASELINE_JOBS=1
    stream ml-100k-bert4rec ml-100k "${ml100k_baselines[@]}" FIRST_SEED=2025 SEEDS=2 BASELINES=BERT4Rec BASELINE_JOBS=1
    stream ml-100k-fmlprec ml-100k "${ml100k_baselines[@]}" FIRST_SEED=2026 SEEDS=1 BASELINES=FMLPRec
  ) &
  ;;
x2)
  (  # a cap of its own: if this run hangs, the rest of the call still gets its time
    end=$((SECONDS + 480))
    stream scientific-2gpus Scientific "${scientific_llada_stream[@]}" MULTI_GPUS=0,1 MULTI_GPU_SEEDS=1 LLADA_SEEDS=0
  )
  (
    stream scientific-llada-24 Scientific "${scientific_llada_stream[@]}" LLADA_GPU=0 LLADA_LABEL="LLaDARec (24 epochs)" \
      LLADA_OVERRIDES="$scientific_llada --epochs=24 --train_time_budget=1200"
    stream ml-100k-sasrec-large ml-100k "${ml100k_baselines[@]}" BASELINE_GPU=0 SEEDS=3 BASELINE_JOBS=3 \
      BASELINES=SASRec BASELINE_LABEL="SASRec (d=256, 4 layers)" \
      BASELINE_OVERRIDES=--config_files=$configs/baselines-h200.yaml,$configs/SASRec-ml-100k-large.yaml
  ) &
  stream ml-100k-llada ml-100k "${ml100k_llada_stream[@]}" LLADA_GPU=1 LLADA_SEEDS=2 FIRST_SEED=2025 &
  stream scientific-bert4rec Scientific "${scientific_baselines[@]}" BASELINE_GPU=1 FIRST_SEED=2025 SEEDS=2 \
    BASELINE_JOBS=2 BASELINES=BERT4Rec &
  stream scientific-gru4rec-fmlprec Scientific "${scientific_baselines[@]}" BASELINE_GPU=1 FIRST_SEED=2026 SEEDS=1 \
    BASELINE_JOBS=2 BASELINES="GRU4Rec FMLPRec" &
  ;;
followup)
  (
    stream ml-100k-llada ml-100k "${ml100k_llada_stream[@]}" LLADA_SEEDS=2 FIRST_SEED=2025
    stream scientific-llada-24 Scientific "${scientific_llada_stream[@]}" LLADA_LABEL="LLaDARec (24 epochs)" \
      LLADA_OVERRIDES="$scientific_llada --epochs=24 --train_time_budget=1200"
  ) &
  stream scientific-bert4rec Scientific "${scientific_baselines[@]}" FIRST_SEED=2025 SEEDS=2 BASELINE_JOBS=1 \
    BASELINES=BERT4Rec &
  (
    stream scientific-gru4rec-fmlprec Scientific "${scientific_baselines[@]}" FIRST_SEED=2026 SEEDS=1 BASELINE_JOBS=1 \
      BASELINES="GRU4Rec FMLPRec"
    stream ml-100k-sasrec-large ml-100k "${ml100k_baselines[@]}" SEEDS=3 BASELINE_JOBS=1 BASELINES=SASRec \
      BASELINE_LABEL="SASRec (d=256, 4 layers)" \
      BASELINE_OVERRIDES=--config_files=$configs/baselines-h200.yaml,$configs/SASRec-ml-100k-large.yaml
  ) &
  ;;
finish)
  stream beauty-sasrec-1 Beauty "${beauty_baselines[@]}" BASELINE_GPU=0 SEEDS=2 BASELINE_JOBS=2 BASELINES=SASRec &
  stream beauty-sasrec-2 Beauty "${beauty_baselines[@]}" BASELINE_GPU=1 FIRST_SEED=2026 SEEDS=1 BASELINES=SASRec &
  stream beauty-bert4rec-1 Beauty "${beauty_baselines[@]}" BASELINE_GPU=1 SEEDS=1 BASELINES=BERT4Rec &
  scientific_sids_then_llada 2 &
  stream scientific-bert4rec Scientific DATA_PATH="$SCIENTIFIC_DATA" LLADA_SEEDS=0 BASELINE_GPU=3 SEEDS=1 \
    BASELINES=BERT4Rec BASELINE_OVERRIDES=--config_files=$configs/baselines-Scientific-h200.yaml &
  stream beauty-bert4rec-2 Beauty "${beauty_baselines[@]}" BASELINE_GPU=3 FIRST_SEED=2025 SEEDS=1 BASELINES=BERT4Rec &
  ;;
beauty)
  (
    stream beauty-llada-2024 Beauty "${beauty_llada_stream[@]}" LLADA_GPU=0
    export CUDA_VISIBLE_DEVICES=0
    timeout "$(left)" python3 benchmarks/anomaly_mode.py --scale=scientific --device=cuda \
      --out_dir="$work/results" > "$work/anomaly_mode.log" 2>&1
    timeout "$(left)" python3 benchmarks/speed.py --out_dir "$work/results" > "$work/speed.log" 2>&1
  ) &
  stream beauty-llada-2025 Beauty "${beauty_llada_stream[@]}" LLADA_GPU=1 FIRST_SEED=2025 &
  stream beauty-sasrec-1 Beauty "${beauty_baselines[@]}" BASELINE_GPU=1 SEEDS=2 BASELINE_JOBS=2 BASELINES=SASRec &
  stream beauty-llada-2026 Beauty "${beauty_llada_stream[@]}" LLADA_GPU=2 FIRST_SEED=2026 &
  stream beauty-sasrec-2 Beauty "${beauty_baselines[@]}" BASELINE_GPU=2 FIRST_SEED=2026 SEEDS=1 BASELINES=SASRec &
  stream beauty-bert4rec-1 Beauty "${beauty_baselines[@]}" BASELINE_GPU=2 SEEDS=1 BASELINES=BERT4Rec &
  scientific_sids_then_llada 3 &
  ;;
scaling)
  (
    stream beauty-2gpus Beauty "${beauty_llada_stream[@]}" MULTI_GPUS=0,1 MULTI_GPU_SEEDS=1 LLADA_SEEDS=0
    stream beauty-bert4rec-3 Beauty "${beauty_baselines[@]}" BASELINE_GPU=0 FIRST_SEED=2026 SEEDS=1 BASELINES=BERT4Rec
  ) &
  stream beauty-1gpu Beauty "${beauty_llada_stream[@]}" LLADA_GPU=2 &
  stream scientific-llada-2025 Scientific "${scientific_llada_stream[@]}" LLADA_GPU=3 FIRST_SEED=2025 &
  wait
  logs=$work/Beauty/logs
  python3 benchmarks/multi_gpu.py --dataset=Beauty --results_dir="$work/Beauty/results" --single=LLaDARec \
    --multi="LLaDARec (2 GPUs)" --single_log="$logs/LLaDARec-2024.log" --multi_log="$logs/LLaDARec-2gpus-2024.log" \
    > "$work/multi_gpu.log" 2>&1 || echo "multi_gpu.py failed: see multi_gpu.log"
  ;;
*)
  echo "unknown part: $part (beauty, finish, scaling, single, followup or x2)" >&2
  exit 2
  ;;
esac
wait
echo "== $part: done $(date -u +%T)"
