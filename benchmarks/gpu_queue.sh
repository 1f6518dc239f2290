#!/usr/bin/env bash
# Run a queue of benchmark commands one after another on one GPU (one LLaDARec per GPU: processes sharing a GPU
# are time-sliced, so running them side by side gains nothing and delays every result).
#
#   bash benchmarks/gpu_queue.sh QUEUE_FILE GPU WORK
#
# QUEUE_FILE (e.g. benchmarks/history/queues/*.txt): one command per line, run from the repository root with
# CUDA_VISIBLE_DEVICES=GPU; blank lines and lines starting with # are skipped; $WORK, $DATA (default
# WORK/../data), $EMB (default WORK/../emb) and $RUN_DIR (WORK/runs/<queue>-<n>, a folder of the command's own:
# give it to --checkpoint_dir, since RecBole names checkpoints by the second they were written and two runs
# started together would share one file) in a line are expanded. Command n logs to WORK/logs/<queue>-<n>.log; a
# failed command is reported and the queue goes on. Start it with setsid when it
# must outlive the shell that starts it (a device call), and poll with: pgrep -f "[g]pu_queue.sh".
set -uo pipefail
queue=${1:?usage: gpu_queue.sh QUEUE_FILE GPU WORK}
gpu=${2:?usage: gpu_queue.sh QUEUE_FILE GPU WORK}
WORK=${3:?usage: gpu_queue.sh QUEUE_FILE GPU WORK}
export WORK DATA=${DATA:-$WORK/../data} EMB=${EMB:-$WORK/../emb} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
name=$(basename "$queue" .txt)
mkdir -p "$WORK/logs"
n=0
while IFS= read -r line || [ -n "$line" ]; do
  [[ -z "${line// }" || "$line" == \#* ]] && continue
  n=$((n + 1))
  log="$WORK/logs/$name-$n.log"
  export RUN_DIR="$WORK/runs/$name-$n"
  mkdir -p "$RUN_DIR"
  echo "== $(date -u +%T) $name #$n on GPU $gpu: $line" | tee -a "$WORK/logs/$name.queue.log"
  CUDA_VISIBLE_DEVICES=$gpu eval "$line" > "$log" 2>&1 || echo "   #$n failed (exit $?): see $log" \
    | tee -a "$WORK/logs/$name.queue.log"
done < "$queue"
echo "== $(date -u +%T) $name done" >> "$WORK/logs/$name.queue.log"
