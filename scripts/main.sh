#!/usr/bin/env bash
# The main job on the embedded default: set up, synthesize the corpus, extract features, train all seven models,
# evaluate them, convert the MLP to TFLite and ship the default MLP and RandomForest into model_zoo/models/.
# Prints the time of each stage. MINUTES=180 SEED=0 by default (about 11 minutes on 2 cores from a fresh clone).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-180}
SEED=${SEED:-0}
stage() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "stage $name: $((SECONDS - t0)) s"; }
total0=$SECONDS
stage setup bash scripts/setup.sh
CLI=.venv/bin/instrument-id
# TimGM6mb (shipped with pretty_midi) always; FluidR3 too where Debian's fluid-soundfont-gm is installed.
# MuseScore_General is kept out of training: it is the held-out soundfont of scripts/heldout_soundfont.sh.
SOUNDFONTS=("$(.venv/bin/python -c 'import os, pretty_midi; print(os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2"))')")
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && SOUNDFONTS+=(/usr/share/sounds/sf2/FluidR3_GM.sf2)
stage synth $CLI synth --out data/synth --minutes "$MINUTES" --seed "$SEED" --soundfont "${SOUNDFONTS[@]}"
stage features $CLI features --data data/synth --out data/features.npz --augment 9 --seed "$SEED"
stage train $CLI train --features data/features.npz --model all --out runs/models --seed "$SEED" --quiet
stage evaluate $CLI evaluate --model runs/models --features data/features.npz --out runs/report
stage convert $CLI convert --model runs/models/mlp --quant all --features data/features.npz
mkdir -p model_zoo/models
for name in mlp rf; do
  rm -rf "model_zoo/models/.$name.new" && cp -r "runs/models/$name" "model_zoo/models/.$name.new"
  rm -rf "model_zoo/models/$name" && mv "model_zoo/models/.$name.new" "model_zoo/models/$name"
done
REAL_DEV=../shared/data/real-dev/medley-solos-db
if [ -d "$REAL_DEV" ]; then
  stage real-dev $CLI evaluate --model model_zoo/models/mlp model_zoo/models/rf --clips "$REAL_DEV" \
    --labels "$REAL_DEV/labels.csv" --out runs/report-real-dev
fi
echo "main: done in $((SECONDS - total0)) s; shipped model_zoo/models/mlp and model_zoo/models/rf; report in runs/report/report.md"
