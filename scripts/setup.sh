#!/usr/bin/env bash
# Installs everything instrument-id needs into ./.venv, and from the system's package manager FluidSynth and the
# General MIDI soundfonts, TiMidity++ with the freepats patch set, wrk,
# Chromium and PostgreSQL (the server the shared prediction-log tests start).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SYSTEM_PACKAGES="libfluidsynth3 fluid-soundfont-gm musescore-general-soundfont csound-soundfont timidity freepats wrk chromium postgresql redis-server"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=$(for p in $SYSTEM_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    echo "setup: apt-get install $missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
elif command -v brew >/dev/null 2>&1; then
  brew list fluid-synth >/dev/null 2>&1 || brew install fluid-synth
else
  echo "setup: cannot install system packages here; install FluidSynth yourself:" >&2
  echo "  Debian/Ubuntu: sudo apt-get install libfluidsynth3 fluid-soundfont-gm   macOS: brew install fluid-synth" >&2
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[train,serve,test]'
# musicnn's wheel pins numpy<1.17, so it is fetched, never installed: its TF1 checkpoint is the source that
# `instrument-id convert-musicnn` converts and the tests hold the shipped conversion to
if [ ! -f .cache/musicnn/musicnn-0.1.0-py3-none-any.whl ]; then
  if ! .venv/bin/python -m pip download -q --no-deps musicnn==0.1.0 -d .cache/musicnn; then
    echo "setup: could not fetch the musicnn wheel from PyPI; the shipped embedding still works, but its conversion" >&2
    echo "  check (tests/test_musicnn.py) skips. Fetch it where PyPI is reachable and copy it here:" >&2
    echo "  pip download --no-deps musicnn==0.1.0 -d .cache/musicnn" >&2
  fi
fi
echo "setup: ready (.venv)"
