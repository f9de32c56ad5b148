#!/usr/bin/env bash
# The main job: set up, synthesize the embedded default corpus, extract its features (then train and evaluate).
# Prints the time of each stage. MINUTES=10 SEED=0 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-10}
SEED=${SEED:-0}
stage() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "stage $name: $((SECONDS - t0)) s"; }
stage setup bash scripts/setup.sh
CLI=.venv/bin/instrument-id
stage synth $CLI synth --out data/synth --minutes "$MINUTES" --seed "$SEED"
stage features $CLI features --data data/synth --out data/features.npz --augment 9 --seed "$SEED"
