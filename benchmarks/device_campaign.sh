#!/usr/bin/env bash
# Benchmark queues on a lent GPU machine (the `device` tool), detached so that they outlive the call that starts them.
#
#   bash benchmarks/device_campaign.sh start WORK QUEUE_FOR_GPU0 [QUEUE_FOR_GPU1 ...]
#   bash benchmarks/device_campaign.sh collect WORK OUT
#   bash benchmarks/device_campaign.sh wait WORK OUT [SECONDS]
#
# start (run in the repository root of a device call, with .whl/ and .carry/ carried):
#   - installs the wheels of .whl/ into /tmp/site (the machine has no RecBole; see ../shared/tools/device-wheels.sh);
#   - copies the repository to /tmp/repo: every device call re-syncs the working tree and deletes what runs wrote
#     in it, so the queues run from the copy;
#   - unpacks .carry/data (atomic files; *.gz decompressed) to WORK/../data and .carry/emb (text embeddings
#     computed on a CPU machine) to WORK/../emb, the $DATA and $EMB of benchmarks/gpu_queue.sh; the official
#     LLaDA-Rec code, if carried in .carry/official, is $OFFICIAL; entries of an earlier session's SID cache, if
#     carried in .carry/sid_cache, seed WORK/sid_cache (a hit skips the SASRec and tokenizer training);
#   - starts benchmarks/gpu_queue.sh for queue i on GPU i with setsid. Poll with: pgrep -f "[g]pu_queue.sh".
# collect: packs WORK's results, logs and SID cache into OUT/results.tgz and OUT/sid_cache.tgz (the device tool
#   brings back at most 8 files of 16 MiB each: a larger cache comes as sid_cache.tgz.part00, part01, ...);
#   checkpoints stay on the machine.
# wait: waits until the queues end or SECONDS (default 540) pass, prints each queue's last line, then collects. Poll
#   with it, one call after another: the machine goes back after about 30 s without a call, taking WORK with it, so
#   every call brings back what is finished and a lost machine costs only the runs in flight.
set -euo pipefail
action=${1:?usage: device_campaign.sh start WORK QUEUE... | collect WORK OUT | wait WORK OUT [SECONDS]}
WORK=${2:?WORK folder}
shift 2
case "$action" in
  start)
    [ $# -ge 1 ] || { echo "name at least one queue file" >&2; exit 2; }
    mkdir -p "$WORK" /tmp/site "$WORK/../data" "$WORK/../emb"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    rm -rf /tmp/repo && cp -r . /tmp/repo
    cp -r .carry/data/. "$WORK/../data/" && find "$WORK/../data" -name "*.gz" -exec gunzip -f {} +
    cp -r .carry/emb/. "$WORK/../emb/"
    if [ -d .carry/sid_cache ]; then mkdir -p "$WORK/sid_cache" && cp -r .carry/sid_cache/. "$WORK/sid_cache/"; fi
    export PYTHONPATH=/tmp/site:/tmp/repo OFFICIAL=/tmp/repo/.carry/official
    export RECBOLE_LLADA_COMMIT=${RECBOLE_LLADA_COMMIT:-unknown}
    cd /tmp/repo
    gpu=0
    for queue in "$@"; do
      setsid nohup bash benchmarks/gpu_queue.sh "$queue" "$gpu" "$WORK" > "$WORK/gpu$gpu.out" 2>&1 < /dev/null &
      echo "started $queue on GPU $gpu"
      gpu=$((gpu + 1))
    done
    ;;
  collect|wait)
    OUT=${1:?OUT folder}
    if [ "$action" = wait ]; then
      deadline=$((SECONDS + ${2:-540}))
      while pgrep -f "[g]pu_queue.sh" > /dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 5; done
      # Progress only: a missing log must not stop the collection (set -e).
      tail -q -n 1 "$WORK"/logs/*.queue.log || true
    fi
    cd "$WORK"
    tar czf "$OUT/results.tgz" --exclude="*.pth" $(ls -d results-* logs official/*.log official/*.json 2>/dev/null)
    if [ -d sid_cache ]; then
      tar czf "$OUT/sid_cache.tgz" sid_cache
      # The device tool brings back files of at most 16 MiB: a larger cache is split into parts (cat them to join).
      if [ "$(stat -c %s "$OUT/sid_cache.tgz")" -gt $((15 * 1024 * 1024)) ]; then
        split -b 15M -d "$OUT/sid_cache.tgz" "$OUT/sid_cache.tgz.part" && rm "$OUT/sid_cache.tgz"
      fi
    fi
    ls -la "$OUT"
    ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
