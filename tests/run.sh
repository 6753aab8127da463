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

# pytest under one selection of test modules (tests/conftest.py): "backends" are the modules that
# use Keras, run under each backend; "backend-free" the ones that use none, run once, with Keras
# unimportable. Exit status 5 (nothing collected) counts as passing only when arguments chose tests,
# which may all lie in the other selection.
chosen=$#  # the arguments given to this script, which pytest gets too
suite() {
  local selection=$1 backend=$2 code=0
  shift 2
  DQNVIZ_TESTS=$selection KERAS_BACKEND=$backend python -m pytest -q -p no:warnings "$@" || code=$?
  if [ "$code" = 5 ] && [ "$chosen" -gt 0 ]; then code=0; fi
  return "$code"
}

# The two backends' suites run at the same time where there are two cores or more: each keeps
# about 1.2 cores busy (Python, then short bursts of XLA or TensorFlow), so together they take
# ~11 minutes on the 2-core CPU where one after the other took ~17. The JAX suite's output is
# kept in a file and shown when the TensorFlow suite, shown as it runs, and the backend-free
# modules after it, are done.
# DQNVIZ_TEST_SERIAL=1 runs them one after the other, all shown as they run.
status=0
if [ "${DQNVIZ_TEST_SERIAL:-0}" != 1 ] && [ "$(nproc 2>/dev/null || echo 1)" -ge 2 ]; then
  jax_log="$(mktemp -t dqnviz-tests-jax.XXXXXX)"
  # Ctrl-C stops both: the JAX suite runs in a process group of its own (set -m), which the
  # trap ends with everything it started (a background job of a script ignores SIGINT itself).
  # It keeps no pytest cache, so that the TensorFlow suite's last-failed record is the one kept.
  trap '[ -n "${jax_pid:-}" ] && kill -- "-$jax_pid" 2>/dev/null; rm -f "$jax_log"' EXIT
  trap 'exit 130' INT TERM
  set -m
  suite backends jax -p no:cacheprovider "$@" >"$jax_log" 2>&1 &
  jax_pid=$!
  set +m
  echo "== tests with KERAS_BACKEND=tensorflow (the JAX suite runs beside it; its output follows)"
  suite backends tensorflow "$@" || status=1
  echo "== tests that use no Keras backend (run once, with Keras unimportable)"
  suite backend-free tensorflow "$@" || status=1
  wait "$jax_pid" || status=1
  jax_pid=
  echo "== tests with KERAS_BACKEND=jax"
  cat "$jax_log"
else
  for backend in tensorflow jax; do
    echo "== tests with KERAS_BACKEND=$backend"
    suite backends "$backend" "$@" || status=1
  done
  echo "== tests that use no Keras backend (run once, with Keras unimportable)"
  suite backend-free tensorflow "$@" || status=1
fi
exit $status
