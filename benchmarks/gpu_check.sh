#!/bin/bash
# Issue 6's GPU checks as one prepared script, for a session that is lent a device machine
# (JAX with CUDA, no TensorFlow, no keras, no network). Everything it measures comes back in $OUT.
#
# Here, once:   ../shared/gpu/wheels.sh pillow threadpoolctl        (wheels into .whl/)
#               mkdir -p ../snapkeep && mv snapshots/*.keras ../snapkeep/   (and back after the lease:
#               the tracked snapshots, 6 × 13 MB, and the wheels, 24 MB, are more than the 64 MiB a
#               call carries; a deleted tracked file does not travel, and nothing here needs them)
# On the device, carrying .whl (the device tool's `run`), two calls that fit a 15-minute lease:
#   bash benchmarks/gpu_check.sh start      # timeout_s 600: install, time the learner alone and
#                                           # count its program's launches (~1 min), then GAME learns for
#                                           # LEARN_MINUTES in the background; returns at CALL_SECONDS
#   COLLECT_SECONDS=<left − 40> bash benchmarks/gpu_check.sh collect
#                                           # at once (a warm machine is kept only 30 s), timeout_s =
#                                           # the lease's time left − 20: waits for the learning run, returns
#                                           # its snapshots and CSV, then profiles throughput until
#                                           # COLLECT_SECONDS
# Then, here: dqnviz test on the snapshots that came back (the Nature test costs ~2 minutes of a
# 15-minute lease on the device, and its scores do not depend on where it runs).
#
# `start` returns what exists by then (the CSV so far), and `collect` copies the results into $OUT
# every few seconds, so a call cut off at its limit still brings back a partial learning curve.
#
# Runs so far (benchmarks/results/; the README's "On one GPU" has them side by side): 2026-11-26 H200, before the fused update: 290 agent steps/s
# classic, 2,707 with 64 envs, Pong -6.7 after 8 minutes. 2026-11-26 H100, fused update: 403
# classic, 4,275 / 4,874 with 64 / 128 envs, emulator ceiling 10,735 (64 envs); Pong 8 minutes,
# 128 envs: 18.1 ± 3.0 (shipped as snapshots/pong-h100_2.keras). 2026-11-26 H100, second lease
# (h100-2026-11-26b): Pong 9.5 minutes with 12 emulator threads, 18.4 ± 1.9 (shipped as
# snapshots/pong-h100-10min_6.keras); 64 envs 6,254 (12 threads) / 5,724 (16); 128 envs with the
# Pong recipe 7,287; the learner alone launch-bound (learner.py). 2026-11-28 H200 (h200-2026-11-28),
# with the CUDA-graph option, fewer passes, the launch thread, sampling ahead and the matrix-product
# convolutions: Pong 9.5 minutes trained at 7,154–7,661 agent steps/s and scored 19.3 ± 1.3 (shipped
# as snapshots/pong-h200-10min_7.keras); 256 envs 7,451 (931 updates/s, as many as with 128: the
# updates set the pace); classic 524 with DQNVIZ_CLASSIC_THREAD=1, 465 without (batch 64 every 8).
# 2026-11-28 H200, second lease (h200-2026-11-28b), the current code, PROGRAM_SECONDS=0: Breakout 8 minutes
# (shipped as snapshots/breakout-h200-8min_6.keras, 33.0 ± 37.3) trained at 8,465–8,904 agent steps/s
# from epoch 3 with the updates launched before the actions are read, the fused update compiled
# once; Pong 128 envs with DQNVIZ_UPDATES_FIRST=0 8,181; batch 128 every 16: 11,831 (128 envs),
# 13,052 (256); classic at 32x4 580, 521 with DQNVIZ_CLASSIC_THREAD=1; the learner alone 0.73 ms an
# update (no longer launch-bound).
# Next lease: `PROGRAM_SECONDS=0 LEARN_ADAM_EPSILON=1e-8 bash benchmarks/gpu_check.sh start`
# (Breakout's first 8 minutes with one change from breakout-h200-8min's run, Adam's ε 1.5e-4 →
# 1e-8, CleanRL's: benchmarks/adam_steps.py measured that ε = 1.5e-4 leaves the dense layers, 97 %
# of the weights, 7–13 % of Adam's step in Breakout, and both Breakout runs levelled off at 25–40;
# does the curve leave 33 behind?); `collect` first takes classic mode's action apart
# (benchmarks/acting.py), then A/Bs the updates-first order on one game and classic mode without
# the launch thread. The lease after: the same with LEARN_BATCH=128 LEARN_FREQUENCY=16 (faster per
# agent step; does it learn as well per minute?).
#
# Environment: GAME (breakout: the first 8 minutes of the issue's 28, whose whole run does not fit a
# lease; pong reached its target on the H200), LEARN_MINUTES (8; 9.5 for pong: the whole train
# command, start-up and compilation included, within the issue's 10 minutes), LEARN_ENVS (128), LEARN_BATCH (64), LEARN_FREQUENCY (8),
# LEARN_LR (0.0001), LEARN_ADAM_EPSILON (0.00015, Rainbow's), LEARN_TRAIN_STEPS (500000 per epoch: a snapshot and a test phase every ~2.5 min),
# CALL_SECONDS (585), PROGRAM_SECONDS (150; 0 skips the learner's launch count at the start), COLLECT_SECONDS (210; give it the lease's time left − 40),
# ACTING_SECONDS (60; 0 skips benchmarks/acting.py at the start of collect),
# THROUGHPUT_RUNS ("1:0:overlapped:::32x4 1:0:overlapped::DQNVIZ_LAUNCH_THREAD=0:32x4 128:0:overlapped:pong 128:0:overlapped:pong:DQNVIZ_UPDATES_FIRST=0 1:0:overlapped::DQNVIZ_MATMUL_CONVOLUTIONS=0:32x4 128:0:overlapped:pong:DQNVIZ_MATMUL_CONVOLUTIONS=0 128:0:overlapped:pong:DQNVIZ_LAUNCH_THREAD=0 128:0:overlapped:pong:DQNVIZ_SAMPLE_AHEAD=0":
# envs, emulator threads (0 = the default: one per env, up to 12 of 16 cores), profile, optionally `pong`
# (the learning recipe: Pong, prioritized, Double, dueling, 3-step), optionally comma-separated VAR=value
# assignments, and optionally BATCHxFREQUENCY (a batch of BATCH every FREQUENCY agent steps; default
# LEARN_BATCH x LEARN_FREQUENCY)), THROUGHPUT_STEPS (10000; times envs/8 per configuration),
# LEARNER_VARIANTS ("DQNVIZ_LAUNCH_THREAD=0;DQNVIZ_LAUNCH_THREAD=0 DQNVIZ_MATMUL_CONVOLUTIONS=0;DQNVIZ_LAUNCH_THREAD=0 DQNVIZ_FEWER_PASSES=0": environments for
# benchmarks/learner.py, run after the throughput runs while time is left; without the launch thread,
# so that its dispatch time is the launches'), EXTRA_OPTIONS (appended to the learning options, a later flag
# winning: a dry run's tiny budgets), RUN_TESTS (0; 1 runs the device-replay and vectorised tests in
# collect, before profiling), NVIS_SECONDS (60: what must be left of COLLECT_SECONDS at the end for
# timing `dqnviz nvis --filters all` of the shipped Pong agent on the GPU).
set -u
OUT=${OUT:-/tmp/out}
WORK=/tmp/dqnviz-gpu
GAME=${GAME:-breakout}
# Pong's 10-minute target takes 9.5 (start-up included); Breakout's curve takes 8, which leaves the
# lease time for the learner's launch count at the start and the A/B runs of `collect`.
if [ "$GAME" = pong ]; then LEARN_MINUTES=${LEARN_MINUTES:-9.5}; else LEARN_MINUTES=${LEARN_MINUTES:-8}; fi
LEARN_ENVS=${LEARN_ENVS:-128}
CALL_SECONDS=${CALL_SECONDS:-585}
COLLECT_SECONDS=${COLLECT_SECONDS:-210}
THROUGHPUT_RUNS=${THROUGHPUT_RUNS:-1:0:overlapped:::32x4 1:0:overlapped::DQNVIZ_LAUNCH_THREAD=0:32x4 128:0:overlapped:pong 128:0:overlapped:pong:DQNVIZ_UPDATES_FIRST=0 1:0:overlapped::DQNVIZ_MATMUL_CONVOLUTIONS=0:32x4 128:0:overlapped:pong:DQNVIZ_MATMUL_CONVOLUTIONS=0 128:0:overlapped:pong:DQNVIZ_LAUNCH_THREAD=0 128:0:overlapped:pong:DQNVIZ_SAMPLE_AHEAD=0}
THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-10000}
mkdir -p "$OUT" "$WORK"

# The Pong recipe of the shipped pong-h100_2 (18.1 after 8 minutes): 128 environments, one
# batch-64 update per 8 agent steps (Nature's 8 sampled transitions per step), Adam 1e-4, Double,
# dueling, 3-step returns, prioritized replay. On the 2-core CPU, learning followed the number of
# updates, not their size (README, "Learning with 64 environments").
# Test phases of 8 environments: each plays its last game to the end (a won game of Pong is
# ~2,000 agent steps), so 8 environments cost ~5 s where the last run's 32 cost 30 s.
# Trained toward the test's policy: the second lease's agent won every game 21-0 when greedy but
# scored 18.4 ± 1.9 at the test's ε = 0.05, so exploration ends at 0.05 (not 0.01), and the targets
# value the next state under the 0.05-greedy policy (--bootstrap-epsilon, expected SARSA): the agent
# learns what its states are worth when one action in twenty is random, and sees those states.
# On the H200 that recipe reached 19.3 ± 1.3 in Pong (pong-h200-10min_7; 18.4 ± 1.9 without).
# A Breakout game at test runs up to 18,000 frames (4,500 agent steps), so its test phases cost more.
LEARN_BATCH=${LEARN_BATCH:-64}
LEARN_FREQUENCY=${LEARN_FREQUENCY:-8}
LEARN_LR=${LEARN_LR:-0.0001}
LEARN_ADAM_EPSILON=${LEARN_ADAM_EPSILON:-0.00015}
LEARN_TRAIN_STEPS=${LEARN_TRAIN_STEPS:-500000}
# 12 of the 16 cores emulate: at 21 % GPU utilisation the 2026-11-26 Pong run was host-bound, and
# 16 emulator threads on 16 cores leave none for the loop and for XLA's kernel launches
LEARN_THREADS=${LEARN_THREADS:-12}
LEARN_OPTIONS=(--epochs 200 --random-steps 50000 --train-steps "$LEARN_TRAIN_STEPS" --test-steps 3200 --test-envs 8
  --num-envs "$LEARN_ENVS" --emulator-threads "$LEARN_THREADS" --device-replay --replay-size 1000000 --batch-size "$LEARN_BATCH"
  --train-frequency "$LEARN_FREQUENCY" --double --dueling --n-step 3 --prioritized --target-steps 8000
  --optimizer adam --learning-rate "$LEARN_LR" --adam-epsilon "$LEARN_ADAM_EPSILON" --epsilon-end 0.05 --bootstrap-epsilon 0.05 --epsilon-decay-steps 150000
  --profile ${EXTRA_OPTIONS:-})

setup() {
  # Without .whl/ (a dry run on a machine that has the packages), use what is installed.
  if [ -d .whl ] && [ ! -d /tmp/site/keras ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  fi
  export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
}

copy_results() {
  cp "$WORK"/run/*.csv "$OUT"/ 2>/dev/null
  cp "$WORK"/gpu_utilisation.csv "$OUT"/ 2>/dev/null
  cp "$WORK"/learning.txt "$OUT"/ 2>/dev/null
  # the newest complete epoch, and the weights at the end of the budget (`_interrupted`)
  newest=$(ls -t "$WORK"/run/*.keras 2>/dev/null | grep -v _interrupted | head -1)
  rm -f "$OUT"/*.keras
  [ -n "$newest" ] && cp "$newest" "$OUT"/
  cp "$WORK"/run/*_interrupted.keras "$OUT"/ 2>/dev/null
}

case "${1:-}" in
  start)
    setup
    rm -rf "$WORK/run"  # nothing from an earlier run may come back as this one's
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
      python3 -c "import jax, keras, ale_py; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'ale-py', ale_py.__version__)"
    } > "$OUT/device.txt" 2>&1
    # What an update costs in launches, before the GPU is shared: the learner alone, launched in
    # place (its dispatch time is then the launches'), and its compiled program counted: command
    # buffers (CUDA graphs) against the launches outside them. A minute or two (two compilations of
    # 16 unrolled updates); the H200 lease found the updates' launches setting the pace (GPU 27 % busy).
    # PROGRAM_SECONDS=0 skips it, leaving the lease's minutes to the learning run.
    if [ "${PROGRAM_SECONDS:-150}" -gt 0 ]; then
      DQNVIZ_LAUNCH_THREAD=0 timeout "${PROGRAM_SECONDS:-150}" python3 benchmarks/learner.py --calls 16x64 --repeats 10 \
        --double --dueling --num-envs 128 --program > "$OUT/program.txt" 2>&1
    fi
    # GPU utilisation every 2 s while the game learns
    setsid nohup nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 \
      > "$WORK/gpu_utilisation.csv" 2>/dev/null < /dev/null &
    # setsid: the run outlives this call, and `collect` picks it up
    setsid nohup python3 benchmarks/learning.py "$GAME" --minutes "$LEARN_MINUTES" --no-test --out "$WORK/run" -- \
      "${LEARN_OPTIONS[@]}" > "$WORK/learning.txt" 2>&1 < /dev/null &
    while [ "$SECONDS" -lt "$CALL_SECONDS" ] && pgrep -f benchmarks/learning.py > /dev/null; do copy_results; sleep 5; done
    copy_results
    cat "$OUT/device.txt"; tail -4 "$WORK/learning.txt"
    ;;
  collect)
    setup
    while pgrep -f benchmarks/learning.py > /dev/null; do copy_results; sleep 2; done
    copy_results
    pkill -f "nvidia-smi --query-gpu" 2>/dev/null
    cat "$WORK/learning.txt"
    if [ "${RUN_TESTS:-0}" = 1 ] && python3 -c "import pytest" 2>/dev/null; then
      timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_device_replay.py tests/test_vectorised.py \
        > "$OUT/tests.txt" 2>&1
      tail -3 "$OUT/tests.txt"
    fi
    # Classic mode's action taken apart (a batch-1 forward: round trip, from a state already on the
    # device, pipelined; XLA's convolutions against matrix products), with the GPU to itself
    if [ "${ACTING_SECONDS:-60}" -gt 0 ] && [ -f benchmarks/acting.py ]; then
      { timeout "${ACTING_SECONDS:-60}" python3 benchmarks/acting.py --states 1,8  # the Nature network of the classic runs
        timeout 40 python3 benchmarks/acting.py --dueling --states 1; } > "$OUT/acting.txt" 2>&1
      cat "$OUT/acting.txt"
    fi
    # With the GPU to itself, one configuration at a time while time is left (about 45 s each):
    # the overlapped profile (where the running loop waits; its run also gives the steps/s) with
    # the default emulator threads (12 of 16 cores). The second H200 lease found the standard
    # ratio past 8,000 agent steps/s and classic mode at 580 (the action 0.86 ms a step, the
    # emulator 0.70). So: classic mode at Nature's batch 32 every 4 as dqnviz runs it and with the
    # updates launched in place (DQNVIZ_LAUNCH_THREAD=0: does the worker thread slow the action?),
    # then 128 envs with the learning recipe with and without the updates launched before the
    # actions are read (DQNVIZ_UPDATES_FIRST=0: the A/B on one game), then the older switches one
    # by one: XLA's cuDNN convolutions (DQNVIZ_MATMUL_CONVOLUTIONS=0, classic and 128 envs), no
    # launch thread, no early draws (DQNVIZ_SAMPLE_AHEAD=0).
    for run in $THROUGHPUT_RUNS; do
      IFS=: read -r envs threads profile recipe assignments shape <<< "$run"
      shape=${shape:-${LEARN_BATCH}x${LEARN_FREQUENCY}}
      options=()  # the learning recipe's own costs (prioritized replay's sum tree, the dueling head)
      [ "${recipe:-}" = pong ] && options=(--game pong --prioritized --double --dueling --n-step 3)
      IFS=, read -ra variables <<< "${assignments:-}"
      left=$((COLLECT_SECONDS - SECONDS))
      [ "$left" -lt 50 ] && { echo "no time left for $run" >> "$OUT/throughput.txt"; break; }
      echo "== $run" >> "$OUT/throughput.txt"
      env "${variables[@]}" timeout "$left" python3 benchmarks/throughput.py --num-envs "$envs" --steps $((THROUGHPUT_STEPS * envs / 8)) \
        --device-replay --batch-size "${shape%x*}" --train-frequency "${shape#*x}" \
        --emulator-threads "$threads" --profile "$profile" "${options[@]}" >> "$OUT/throughput.txt" 2>&1
    done
    cat "$OUT/throughput.txt"
    # The fused update alone, without the loop: host dispatch time against time to the results,
    # under variants (one process each: XLA reads its options once). LEARNER_VARIANTS:
    # ';'-separated variants, each "default" or space-separated VAR=value assignments.
    if [ -f benchmarks/learner.py ]; then
      IFS=';' read -ra variants <<< "${LEARNER_VARIANTS:-DQNVIZ_LAUNCH_THREAD=0;DQNVIZ_LAUNCH_THREAD=0 DQNVIZ_MATMUL_CONVOLUTIONS=0;DQNVIZ_LAUNCH_THREAD=0 DQNVIZ_FEWER_PASSES=0}"
      for variant in "${variants[@]}"; do
        left=$((COLLECT_SECONDS - SECONDS))
        [ "$left" -lt 40 ] && { echo "no time left for learner $variant" >> "$OUT/learner.txt"; break; }
        read -ra assignments <<< "$variant"; [ "$variant" = default ] && assignments=()
        echo "== $variant" >> "$OUT/learner.txt"
        env "${assignments[@]}" timeout $((left < 50 ? left : 50)) python3 benchmarks/learner.py \
          ${LEARNER_OPTIONS:---calls 8x64,16x64,2x256 --double --dueling --repeats 30} >> "$OUT/learner.txt" 2>&1
      done
      cat "$OUT/learner.txt"
    fi
    # nvis of the shipped Pong agent, every filter, where the compiled analyses run on the GPU (no
    # Chromium there: the command's phases and end-to-end time only), while NVIS_SECONDS are left
    left=$((COLLECT_SECONDS - SECONDS))
    if [ "$left" -ge "${NVIS_SECONDS:-60}" ] && [ -f snapshots/pong-h100-10min_6.keras ]; then
      timeout "$left" python3 benchmarks/nvis_speed.py snapshots/pong-h100-10min_6.keras --no-browser > "$OUT/nvis.txt" 2>&1
      cat "$OUT/nvis.txt"
    else
      echo "no time left for nvis (or its snapshot was left behind)" > "$OUT/nvis.txt"
    fi
    ;;
  *)
    echo "usage: bash benchmarks/gpu_check.sh start|collect" >&2
    exit 2
    ;;
esac
