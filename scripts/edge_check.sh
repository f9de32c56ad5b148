#!/usr/bin/env bash
# Prove the edge install: a fresh venv with the core and the [edge] extra only (no TensorFlow, no librosa),
# installed from this repository as a normal (not editable) package, runs `instrument-id predict` on a clip.
#
# usage: scripts/edge_check.sh MODEL.tflite CLIP [VENV_DIR]   (VENV_DIR defaults to /tmp/edge-venv; PYTHON picks
#        the interpreter, default python3). A feature-level .tflite needs its folder's pipeline.json beside it.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 MODEL.tflite CLIP [VENV_DIR]" >&2
    exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
model=$(realpath "$1")
clip=$(realpath "$2")
venv=${3:-/tmp/edge-venv}
python=${PYTHON:-python3}

echo "== fresh venv $venv ($("$python" --version))"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# build from a copy so the repository's own build/ and *.egg-info are neither used nor touched
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -C "$repo" --exclude=./.venv --exclude=./.git --exclude=./runs --exclude=./data --exclude=./build --exclude='*.egg-info' -cf - . \
    | tar -C "$src" -xf -
"$venv/bin/python" -m pip install --quiet "$src[edge]"

echo "== installed packages"
"$venv/bin/python" -m pip list --format=freeze
heavy=$("$venv/bin/python" -m pip list --format=freeze | grep -iE '^(tensorflow|tensorflow-cpu|tf-keras|keras|librosa)==' || true)
if [[ -n "$heavy" ]]; then
    echo "FAIL: the edge install pulled in: $heavy" >&2
    exit 1
fi
echo "no tensorflow, keras or librosa installed"

echo "== instrument-id predict (run outside the repository, so only the installed package is importable)"
cd "$(mktemp -d)"
"$venv/bin/instrument-id" predict "$clip" --model "$model" --json
echo "== instrument-id predict with its default model: the shipped raw-audio MLP, installed as package data"
"$venv/bin/instrument-id" predict "$clip" --json
"$venv/bin/python" -c "from model_zoo import shipped_model_dir, verify_model_dir; \
print('installed default model verified:', shipped_model_dir(), verify_model_dir(shipped_model_dir())['version'])"

echo "== instrument-id predict with the shipped musicnn raw-audio model (log-mel + network + head in one file)"
"$venv/bin/instrument-id" predict "$clip" --model "$repo/model_zoo/models/musicnn/model_raw_audio.tflite" --json
echo "== instrument-id analyze with the installed musicnn folder (whole windows through its raw-audio graph)"
"$venv/bin/instrument-id" analyze "$clip" --model "$("$venv/bin/python" -c 'from model_zoo import shipped_model_dir; print(shipped_model_dir("musicnn"))')" \
    --out "$(mktemp -d)/timeline" --no-plot --quiet
echo "== the CLI in the edge install: --help works, a training command says which extra it needs in one line"
"$venv/bin/instrument-id" --help >/dev/null
set +e
message=$("$venv/bin/instrument-id" synth --out "$(mktemp -d)/corpus" --minutes 1 2>&1); status=$?
set -e
if [[ $status != 2 || $message == *Traceback* || $message != *"pip install 'instrument-id[train]'"* ]]; then
    echo "edge check: 'instrument-id synth' should exit 2 with one line naming the extra, got $status: $message" >&2
    exit 1
fi
echo "$message"

echo "== install size"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "edge venv site-packages: $(du -sh "$site" | cut -f1)"
if [[ -d "$repo/.venv" ]]; then
    full_site=$("$repo/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "full .venv site-packages: $(du -sh "$full_site" | cut -f1) (whole .venv: $(du -sh "$repo/.venv" | cut -f1))"
fi
