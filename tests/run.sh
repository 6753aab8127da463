#!/usr/bin/env bash
# Set up everything and run the test suite under both Keras backends (TensorFlow, then JAX).
#   bash tests/run.sh            # from the project root, on a fresh machine with Python 3.11+
# Creates .venv, or uses VENV=... when given (even inside an active virtualenv, so that
# PIP_CONSTRAINT=.ci/floors.txt VENV=.venv-floors never downgrades the one in use), else an active
# virtualenv; installs dqnviz with its test extras, installs Debian's chromium for the report tests when it is missing, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VENV:-}" ] || [ -z "${VIRTUAL_ENV:-}" ]; then
  VENV="${VENV:-.venv}"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[tensorflow,jax,play,test]'

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

export TF_CPP_MIN_LOG_LEVEL=3 SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy

# Two selections of test modules (tests/conftest.py): "backends", the modules that use Keras, run
# under each backend; "backend-free" (tests/backend_free.txt), the ones that use none, run once,
# with Keras unimportable. Test files or node ids given as arguments go to the selection of their
# module, and a selection none of them is in does not run; other arguments (-k, -x, …) go to all.
mapfile -t backend_free < <(grep -v '^#' tests/backend_free.txt)
options=() backends_paths=() free_paths=()
for argument in "$@"; do
  module=$(basename -- "${argument%%::*}")
  if [[ "$argument" == -* || "$module" != test_*.py ]]; then
    options+=("$argument")
  elif printf '%s\n' "${backend_free[@]}" | grep -qx "$module"; then
    free_paths+=("$argument")
  else
    backends_paths+=("$argument")
  fi
done
run_backends=1 run_free=1
if [ $(( ${#backends_paths[@]} + ${#free_paths[@]} )) -gt 0 ]; then
  [ ${#backends_paths[@]} -gt 0 ] || run_backends=0
  [ ${#free_paths[@]} -gt 0 ] || run_free=0
fi
# A suite's exit status: 0 passed, 5 collected nothing (-k matched none of its tests), else failed.
# The run fails if a suite failed, or if no suite ran a test.
failed=0 ran=0
tally() {
  case "$1" in
    0) ran=1 ;;
    5) ;;
    *) failed=1 ;;
  esac
}
suite() {  # selection backend [pytest arguments]
  local selection=$1 backend=$2
  shift 2
  # --durations: the slowest tests, for whoever shortens the suite next
  DQNVIZ_TESTS=$selection KERAS_BACKEND=$backend python -m pytest -q -p no:warnings --durations=15 "$@"
}
free_modules() {  # [title] [module paths: default the arguments' own, else every backend-free module]
  echo "== tests that use no Keras backend${1:-} (run once, with Keras unimportable)"
  shift || true
  suite backend-free tensorflow ${options[@]+"${options[@]}"} ${free_paths[@]+"${free_paths[@]}"} "$@"
}
free_suite() {  # free_modules, its exit status tallied
  local code=0
  free_modules "$@" || code=$?
  tally "$code"
}
# Where the two backends' suites run side by side, the backend-free modules run in two halves,
# one after each, so that the two sides end together. Alone on the 2-core CPU the first half
# took 73 s (test_backend_choice 43, test_atari 30, test_replay 1) and the rest 64 s (test_plot
# 54, test_render 10, …); the TensorFlow suite, which ends ~10 s before the JAX suite, takes the
# first. A module added to backend_free.txt joins the second half.
free_first=(test_backend_choice.py test_atari.py test_replay.py)
free_second=()
for module in "${backend_free[@]}"; do
  printf '%s\n' "${free_first[@]}" | grep -qx "$module" || free_second+=("tests/$module")
done
free_first=("${free_first[@]/#/tests/}")
backends_arguments=(${options[@]+"${options[@]}"} ${backends_paths[@]+"${backends_paths[@]}"})

# The two backends' suites run at the same time where there are two cores or more: each keeps
# about 1.2 cores busy (Python, then short bursts of XLA or TensorFlow). On the 2-core CPU they
# take about 13 minutes side by side, and the backend-free modules 1.2–1.4 more, half after each
# (CI: 919 and 1,027 s in all, the two sides ending within 5 s of each other, against 1,006 s
# with all of them after the TensorFlow suite, whose side then ended ~110 s after the JAX one;
# running them beside both as a third process had saved 13 s of 15.8 minutes). The JAX side's output is kept in a file and
# shown when the TensorFlow side, shown as it runs, is done. Given test files of their own, the
# backend-free modules run whole after the TensorFlow suite.
# DQNVIZ_TEST_SERIAL=1 runs them one after the other, all shown as they run.
trap 'exit 130' INT TERM
if [ "$run_backends" = 1 ] && [ "${DQNVIZ_TEST_SERIAL:-0}" != 1 ] && [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then
  jax_log="$(mktemp -t dqnviz-tests-jax.XXXXXX)" jax_codes="$(mktemp -t dqnviz-tests-codes.XXXXXX)"
  split_free=0
  [ "$run_free" = 1 ] && [ ${#free_paths[@]} -eq 0 ] && split_free=1
  jax_side() {  # the JAX suite, then the second half of the backend-free modules; their codes in $jax_codes
    local code=0
    suite backends jax -p no:cacheprovider ${backends_arguments[@]+"${backends_arguments[@]}"} || code=$?
    echo "$code" >> "$jax_codes"
    if [ "$split_free" = 1 ]; then
      code=0
      free_modules ", second half" -p no:cacheprovider "${free_second[@]}" || code=$?
      echo "$code" >> "$jax_codes"
    fi
  }
  # Ctrl-C stops both: the JAX suite runs in a process group of its own (set -m), which the
  # trap ends with everything it started (a background job of a script ignores SIGINT itself).
  # It keeps no pytest cache, so that the TensorFlow suite's last-failed record is the one kept.
  trap '[ -n "${jax_pid:-}" ] && kill -- "-$jax_pid" 2>/dev/null; rm -f "$jax_log" "$jax_codes"' EXIT
  set -m
  jax_side >"$jax_log" 2>&1 &
  jax_pid=$!
  set +m
  echo "== tests with KERAS_BACKEND=tensorflow (the JAX suite runs beside it; its output follows)"
  code=0; suite backends tensorflow ${backends_arguments[@]+"${backends_arguments[@]}"} || code=$?; tally "$code"
  if [ "$split_free" = 1 ]; then
    free_suite ", first half" "${free_first[@]}"
  elif [ "$run_free" = 1 ]; then
    free_suite
  fi
  code=0; wait "$jax_pid" || code=$?
  [ "$code" = 0 ] || failed=1
  expected=$(( 1 + split_free ))
  [ "$(wc -l < "$jax_codes")" -eq "$expected" ] || failed=1  # a side that stopped before saying
  while read -r code; do tally "$code"; done < "$jax_codes"
  jax_pid=
  echo "== tests with KERAS_BACKEND=jax"
  cat "$jax_log"
else
  if [ "$run_backends" = 1 ]; then
    for backend in tensorflow jax; do
      echo "== tests with KERAS_BACKEND=$backend"
      code=0; suite backends "$backend" ${backends_arguments[@]+"${backends_arguments[@]}"} || code=$?; tally "$code"
    done
  fi
  [ "$run_free" = 0 ] || free_suite
fi
if [ "$ran" = 0 ]; then
  echo "no test ran: the arguments chose none" >&2
  failed=1
fi
status=$failed
exit $status
