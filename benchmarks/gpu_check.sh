#!/bin/bash
# Issue 6's GPU checks as one prepared script, for a session that is lent a device machine
# (JAX with CUDA, no TensorFlow, no keras, no network). Everything it measures comes back in $OUT.
#
# Here, once:   ../shared/gpu/wheels.sh pillow threadpoolctl        (wheels into .whl/)
# On the device, carrying .whl (the device tool's `run`):
#   bash benchmarks/gpu_check.sh start      # timeout_s 580: install, emulator ceiling and throughput
#                                           # (≈ 2.5 min), then Pong
#                                           # learning in the background; returns at CALL_SECONDS
#   bash benchmarks/gpu_check.sh collect    # at once (a warm machine is kept only 30 s): waits for
#                                           # the Pong run and its test, returns snapshot and CSV
# About 13 minutes of device time with the machine's start.
#
# `start` returns what exists by then (throughput figures, the CSV so far), and `collect` copies
# the results into $OUT every few seconds, so a call cut off at its limit still brings back a
# partial learning curve.
#
# First run (2026-11-26, H200, before the fused update): 290 agent steps/s classic, 2,707 with 64
# envs, GPU 9% busy; Pong -6.7 after 8 minutes (README, "Measured on a GPU").
#
# Environment: PONG_MINUTES (8), PONG_ENVS (128), PONG_BATCH (64), PONG_FREQUENCY (8),
# PONG_LR (0.0001), CALL_SECONDS (540), THROUGHPUT_STEPS (10000; 8x and 16x that for 64 and 128 envs),
# RUN_TESTS (0; 1 runs the device-replay and vectorised tests after the learning run),
# EXTRA_OPTIONS (appended to the Pong options: a dry run's tiny budgets).
set -u
OUT=${OUT:-/tmp/out}
WORK=/tmp/dqnviz-gpu
PONG_MINUTES=${PONG_MINUTES:-8}
PONG_ENVS=${PONG_ENVS:-128}
CALL_SECONDS=${CALL_SECONDS:-540}
THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-10000}
mkdir -p "$OUT" "$WORK"

# The Pong recipe: one batch-64 update per 8 agent steps (Nature's 8 sampled transitions per step),
# Adam 1e-4. On the 2-core CPU, 64 environments with this recipe learned as fast per agent step as
# the 4-environment recipe of the shipped agent, while one batch-128 update per 16 steps learned
# at half the speed per step (about the same per update): learning follows the number of updates,
# not their size (README, "Learning with 64 environments"). PONG_BATCH, PONG_FREQUENCY and PONG_LR
# select another recipe (128, 16, 0.00015 was the first GPU run's).
# 128 environments on the GPU: emulating 64 took longer than acting and learning together, and
# more environments spread the per-iteration costs over more steps.
# Epochs of 1,000,000 agent steps, and test phases of 32 whole games: each test environment plays
# its last game to the end (up to 4,500 agent steps), so a test costs the same whatever its steps,
# and fewer environments make it cheaper (the first run's 64-env tests took 6% of its 8 minutes).
PONG_BATCH=${PONG_BATCH:-64}
PONG_FREQUENCY=${PONG_FREQUENCY:-8}
PONG_LR=${PONG_LR:-0.0001}
PONG_OPTIONS=(--epochs 200 --random-steps 50000 --train-steps 1000000 --test-steps 3200 --test-envs 32
  --num-envs "$PONG_ENVS" --device-replay --replay-size 1000000 --batch-size "$PONG_BATCH"
  --train-frequency "$PONG_FREQUENCY" --double --dueling --n-step 3 --prioritized --target-steps 8000
  --optimizer adam --learning-rate "$PONG_LR" --epsilon-end 0.01 --epsilon-decay-steps 150000
  ${EXTRA_OPTIONS:-})

setup() {
  # Without .whl/ (a dry run on a machine that has the packages), use what is installed.
  if [ -d .whl ] && [ ! -d /tmp/site/keras ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  fi
  export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
}

copy_results() {
  cp "$WORK"/pong/*.csv "$OUT"/ 2>/dev/null
  cp "$WORK"/gpu_utilisation.csv "$OUT"/ 2>/dev/null
  cp "$WORK"/learning.txt "$OUT"/ 2>/dev/null
  # the newest complete epoch, and the weights at the end of the budget (`_interrupted`)
  newest=$(ls -t "$WORK"/pong/*.keras 2>/dev/null | grep -v _interrupted | head -1)
  rm -f "$OUT"/*.keras
  [ -n "$newest" ] && cp "$newest" "$OUT"/
  cp "$WORK"/pong/*_interrupted.keras "$OUT"/ 2>/dev/null
}

case "${1:-}" in
  start)
    setup
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
      python3 -c "import jax, keras, ale_py; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'ale-py', ale_py.__version__)"
    } > "$OUT/throughput.txt" 2>&1  # the device first (at most 8 files come back)
    # Throughput first, with the GPU to itself; then Pong learns in the background (setsid: the
    # run outlives this call, and `collect` picks it up).
    {
      # the emulator's ceiling on this machine (no network): what no learner can beat
      timeout 60 python3 benchmarks/emulator.py --game pong --steps 8000 --num-envs 1,16,64,128
      # each capped, so that a slow surprise still leaves time for the learning run
      timeout 100 python3 benchmarks/throughput.py --num-envs 1 --steps "$THROUGHPUT_STEPS" --device-replay
      # the Pong recipe's updates (8 sampled transitions per agent step)
      for envs in 64 128; do
        timeout 100 python3 benchmarks/throughput.py --num-envs $envs --steps $((THROUGHPUT_STEPS * envs / 8)) \
          --device-replay --batch-size "$PONG_BATCH" --train-frequency "$PONG_FREQUENCY"
      done
    } >> "$OUT/throughput.txt" 2>&1
    # GPU utilisation every 2 s while Pong learns
    setsid nohup nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 \
      > "$WORK/gpu_utilisation.csv" 2>/dev/null < /dev/null &
    setsid nohup python3 benchmarks/learning.py pong --minutes "$PONG_MINUTES" --out "$WORK/pong" -- \
      "${PONG_OPTIONS[@]}" > "$WORK/learning.txt" 2>&1 < /dev/null &
    while [ "$SECONDS" -lt "$CALL_SECONDS" ] && pgrep -f benchmarks/learning.py > /dev/null; do copy_results; sleep 5; done
    copy_results
    tail -5 "$OUT/throughput.txt"; tail -3 "$WORK/learning.txt"
    ;;
  collect)
    setup
    while pgrep -f benchmarks/learning.py > /dev/null; do copy_results; sleep 5; done
    copy_results
    cat "$WORK/learning.txt"
    # the copy in $OUT gets the tests' output appended
    if [ "${RUN_TESTS:-0}" = 1 ] && python3 -c "import pytest" 2>/dev/null; then
      timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_device_replay.py tests/test_vectorised.py \
        > "$WORK/tests.txt" 2>&1
      cat "$WORK/tests.txt" >> "$OUT/learning.txt"
      tail -3 "$WORK/tests.txt"
    fi
    ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh start|collect" >&2
    exit 2
    ;;
esac
