#!/bin/bash
# Issue 6's GPU checks as one prepared script, for a session that is lent a device machine
# (JAX with CUDA, no TensorFlow, no keras, no network). Everything it measures comes back in $OUT.
#
# Here, once:   ../shared/gpu/wheels.sh pillow threadpoolctl        (wheels into .whl/)
# On the device, carrying .whl (the device tool's `run`):
#   bash benchmarks/gpu_check.sh start      # timeout_s 580: install, throughput (≈ 2 min), then Pong
#                                           # learning in the background; returns at CALL_SECONDS
#   bash benchmarks/gpu_check.sh collect    # at once (a warm machine is kept only 30 s): waits for
#                                           # the Pong run and its test, returns snapshot and CSV
# About 12 minutes of device time with the machine's start.
#
# `start` returns what exists by then (throughput figures, the CSV so far), so a machine lost
# between the two calls still leaves a partial learning curve behind.
#
# Environment: PONG_MINUTES (7), CALL_SECONDS (540), THROUGHPUT_STEPS (10000; 8x that for 64 envs).
set -u
OUT=${OUT:-/tmp/out}
WORK=/tmp/dqnviz-gpu
PONG_MINUTES=${PONG_MINUTES:-7}
CALL_SECONDS=${CALL_SECONDS:-540}
THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-10000}
mkdir -p "$OUT" "$WORK"

# The recipe that learned Pong on the 2-core CPU with 64 environments (README, "Shipped agents"):
# four batch-128 updates per 64-environment step, i.e. one per 16 agent steps, which is Nature's
# 8 sampled transitions per agent step.
PONG_OPTIONS=(--epochs 200 --random-steps 50000 --train-steps 250000 --test-steps 10000
  --num-envs 64 --device-replay --replay-size 1000000 --batch-size 128 --train-frequency 16
  --double --dueling --n-step 3 --prioritized --target-steps 8000
  --optimizer adam --learning-rate 0.00015 --epsilon-end 0.01 --epsilon-decay-steps 150000)

setup() {
  # Without .whl/ (a dry run on a machine that has the packages), use what is installed.
  if [ -d .whl ] && [ ! -d /tmp/site/keras ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  fi
  export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
}

copy_results() {
  cp "$WORK"/pong/*.csv "$OUT"/ 2>/dev/null
  cp "$WORK"/learning.txt "$OUT"/ 2>/dev/null
  newest=$(ls -t "$WORK"/pong/*.keras 2>/dev/null | grep -v _interrupted | head -1)
  [ -n "$newest" ] && cp "$newest" "$OUT"/
}

case "${1:-}" in
  start)
    setup
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
      python3 -c "import jax, keras, ale_py; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'ale-py', ale_py.__version__)"
    } > "$OUT/device.txt" 2>&1
    # Throughput first, with the GPU to itself; then Pong learns in the background (setsid: the
    # run outlives this call, and `collect` picks it up).
    {
      # each capped, so that a slow surprise still leaves time for the learning run
      timeout 120 python3 benchmarks/throughput.py --num-envs 1 --steps "$THROUGHPUT_STEPS" --device-replay
      for shape in "128 16" "512 64"; do  # the Pong recipe's updates, then the fewest, largest ones
        set -- $shape
        timeout 120 python3 benchmarks/throughput.py --num-envs 64 --steps $((THROUGHPUT_STEPS * 8)) --device-replay \
          --batch-size "$1" --train-frequency "$2"
      done
    } > "$OUT/throughput.txt" 2>&1
    if python3 -c "import pytest" 2>/dev/null; then
      timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_device_replay.py tests/test_vectorised.py \
        > "$OUT/tests_gpu.txt" 2>&1
    fi
    setsid nohup python3 benchmarks/learning.py pong --minutes "$PONG_MINUTES" --out "$WORK/pong" -- \
      "${PONG_OPTIONS[@]}" > "$WORK/learning.txt" 2>&1 < /dev/null &
    while [ "$SECONDS" -lt "$CALL_SECONDS" ] && pgrep -f benchmarks/learning.py > /dev/null; do sleep 5; done
    copy_results
    tail -5 "$OUT/throughput.txt"; tail -3 "$WORK/learning.txt"
    ;;
  collect)
    setup
    while pgrep -f benchmarks/learning.py > /dev/null; do sleep 5; done
    copy_results
    cat "$WORK/learning.txt"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh start|collect" >&2
    exit 2
    ;;
esac
