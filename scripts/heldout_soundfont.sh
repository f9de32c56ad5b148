#!/usr/bin/env bash
# Held-out soundfont experiment: the default models (trained on TimGM6mb + FluidR3 by scripts/main.sh) scored on a
# corpus rendered only with MuseScore_General, a soundfont they never heard.
set -euo pipefail
cd "$(dirname "$0")/.."
HELD_OUT=${HELD_OUT:-/usr/share/sounds/sf3/MuseScore_General.sf3}
[ -f "$HELD_OUT" ] || { echo "held-out soundfont $HELD_OUT missing: apt-get install musescore-general-soundfont" >&2; exit 2; }
CLI=.venv/bin/instrument-id
$CLI synth --out data/synth-heldout --minutes "${MINUTES:-10}" --seed 101 --soundfont "$HELD_OUT"
$CLI features --data data/synth-heldout --out data/features-heldout.npz --augment 0 --seed 101
$CLI evaluate --model model_zoo/models/mlp model_zoo/models/rf --features data/features-heldout.npz \
  --out runs/report-heldout-soundfont "$@"
