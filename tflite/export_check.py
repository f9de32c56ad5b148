"""Every .tflite file `convert` writes, held to the model it came from, on the edge runtime users get.

As YAMNet checks each of its exports, four short clips go through both: silence, seeded noise, a 440 Hz sine and a
music-like sequence of harmonic tones (tflite.signals; nothing is downloaded). Each clip is cut into windows; the
file answers through model_zoo.tflite_model.EdgeModel (ai_edge_litert, as `predict` runs it), the reference through
its own path (numpy features, pipeline, Keras). A file passes when no probability differs by more than its
variant's tolerance and no decision differs unless the reference probability lies within that tolerance of its
threshold (a raw-audio graph decides inside it, so its thresholds are checked too).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instrument_id.audio import frame_windows
from instrument_id.errors import InstrumentIdError
from model_zoo.model import Model
from tflite.signals import check_clips

# Largest |Δp| (probabilities in 0..1) a file may differ from its Keras model on the check clips, per --quant variant:
# 2-5x (float32 and raw audio: far more) the worst measured on the shipped models and tests/edge_model_fixture.py.
# float32 1.3e-6 (the same arithmetic); float16 9e-4 (weights rounded to 11 bits); dynamic 0.022 (8-bit weights);
# int8 0.058 on the fixture and 0.034 on the shipped mlp reconverted (8-bit activations, outputs in steps of 1/256);
# raw audio 3.3e-4 for the 26-feature graph (TF ops against the numpy features), 5e-6 for musicnn. Broken files are
# far beyond: int8 calibrated on training windows alone, as before this check, missed by 0.74 on silence (fixture)
# and 0.33 on noise (the mlp's model_int8.tflite shipped until it was reconverted with the generated clips).
EXPORT_TOLERANCES: dict[str, float] = {
    "none": 1e-4,
    "raw": 5e-3,
    "float16": 5e-3,
    "dynamic": 0.05,
    "int8": 0.15,
}


@dataclass(frozen=True)
class InputCheck:
    """One clip through both models."""

    name: str
    n_windows: int
    max_abs_diff: float  # max |Δp| over its windows and instruments
    differing_decisions: int  # (window, instrument) pairs decided differently
    unexplained_decisions: int  # of those, where the reference is farther than the tolerance from the threshold


@dataclass(frozen=True)
class ExportCheck:
    """A file's check: every input's figures against the variant's tolerance."""

    file: str
    variant: str
    tolerance: float
    inputs: tuple[InputCheck, ...]

    def _fails(self, item: InputCheck) -> bool:
        return item.max_abs_diff > self.tolerance or item.unexplained_decisions > 0

    @property
    def passed(self) -> bool:
        """No input differs beyond the tolerance."""
        return not any(self._fails(item) for item in self.inputs)

    @property
    def worst(self) -> InputCheck:
        """The input that fails (else differs) most: failing first, then by |Δp|."""
        return max(self.inputs, key=lambda item: (self._fails(item), item.unexplained_decisions, item.max_abs_diff))

    def line(self) -> str:
        """`check FILE: decisions agree on a/b inputs (n windows), max |Δp| x on INPUT (tolerance t)`."""
        agree = sum(item.differing_decisions == 0 for item in self.inputs)
        windows = sum(item.n_windows for item in self.inputs)
        worst = self.worst
        line = (f"check {self.file}: decisions agree on {agree}/{len(self.inputs)} inputs ({windows} windows), "
                f"max |Δp| {worst.max_abs_diff:.3g} on {worst.name} (tolerance {self.tolerance:g})")
        return line if self.passed else line + ": REFUSED"

    def reason(self) -> str:
        """Why the file was refused, naming the worst input."""
        worst = self.worst
        beyond = (f", {worst.unexplained_decisions} decision(s) differ where Keras is more than the tolerance from "
                  "the threshold") if worst.unexplained_decisions else ""
        return (f"differs from its Keras model on {worst.name}: max |Δp| {worst.max_abs_diff:.3g} "
                f"(tolerance {self.tolerance:g} for {self.variant}){beyond}")


def check_export(path: str | Path, variant: str, reference: Model) -> ExportCheck:
    """Run the .tflite file at path (beside the pipeline.json it reads) and reference on the check clips."""
    from model_zoo.tflite_model import EdgeModel

    path = Path(path)
    if variant not in EXPORT_TOLERANCES:
        raise InstrumentIdError(f"{path}: no export tolerance for variant {variant!r}; known: {sorted(EXPORT_TOLERANCES)}")
    edge = EdgeModel(path)
    if edge.params != reference.params or edge.feature_set != reference.feature_set:
        raise InstrumentIdError(f"{path}: converted with other audio settings or another feature set than {reference.path}")
    tolerance = EXPORT_TOLERANCES[variant]
    thresholds = reference.pipeline.thresholds  # (11,)
    inputs = []
    for name, clip in check_clips(reference.params).items():
        windows = frame_windows(clip, reference.params)  # (n_windows, window_samples)
        expected_p, expected_d = reference.predict_windows(windows)  # (n, 11) each
        got_p, got_d = edge.predict_windows(windows)
        differing = got_d != expected_d  # (n, 11)
        far = np.abs(expected_p - thresholds) > tolerance  # (n, 11) a flip here is not rounding
        inputs.append(InputCheck(name, len(windows), float(np.abs(got_p - expected_p).max()),
                                 int(differing.sum()), int((differing & far).sum())))
    return ExportCheck(path.name, variant, tolerance, tuple(inputs))


def check_candidate(data: bytes, filename: str, variant: str, reference: Model) -> ExportCheck:
    """check_export on bytes not yet in the model folder, run from a scratch folder beside a copy of its pipeline.json."""
    from model_zoo.zoo import PIPELINE_FILE

    if reference.path is None:
        raise InstrumentIdError(f"{filename}: the reference model has no folder (and no {PIPELINE_FILE}) to check against")
    with tempfile.TemporaryDirectory(prefix="instrument-id-check-") as scratch:
        path = Path(scratch) / filename
        path.write_bytes(data)
        shutil.copyfile(reference.path / PIPELINE_FILE, path.with_name(PIPELINE_FILE))
        return check_export(path, variant, reference)
