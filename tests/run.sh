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
status=0
for backend in tensorflow jax; do
  echo "== tests with KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend python -m pytest -q -p no:warnings "$@" || status=1
done
exit $status
