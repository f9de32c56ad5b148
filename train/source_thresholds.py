"""Decision thresholds chosen on timbres the model never heard (cross-source), instead of on the valid split.

Valid windows share their soundfonts with the training windows, so thresholds chosen there are tuned to timbres the
model knows; real recordings are timbres it has never heard, where its probabilities run lower or higher. The
cross-source thresholds imitate that shift on synthetic audio only: for each timbre source used alone by some
recordings, a model of the same kind is fitted on the recordings that never use it and predicts the original
windows of the recordings rendered with it alone; the per-instrument F1-best thresholds of all those pooled
predictions (the same grid as choose_thresholds) replace the valid ones of the model fitted on everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from instrument_id.errors import InstrumentIdError
from model_zoo.featureset import FeatureSet

POLICIES = ("valid", "cross-source")


@dataclass
class OutOfSource:
    """The pooled predictions of models fitted without a source on that source's recordings."""

    Y: np.ndarray  # (n, 11) labels of the pooled windows
    P: np.ndarray  # (n, 11) probabilities of the model that never heard the window's source
    sources: list[str]  # the sources held out, in order
    models: list[Any]  # the fitted model of each held-out source

    def thresholds(self) -> np.ndarray:
        """(11,) the per-instrument F1-best grid thresholds of the pooled predictions."""
        from train.models import choose_thresholds

        return choose_thresholds(self.Y, self.P)


def sources_used_alone(font_sets: list[frozenset[str]]) -> list[str]:
    """The sources some window's recording uses alone (a recording of no instrument uses none), sorted."""
    return sorted({next(iter(fonts)) for fonts in font_sets if len(fonts) == 1})


def out_of_source_predictions(features: FeatureSet, font_sets: list[frozenset[str]], name: str, seed: int,
                              **train_kwargs: Any) -> OutOfSource:
    """Fit `name` once per source used alone, on every window whose recording never uses it (its train and valid
    splits, as train_model does), and predict the original windows (every split) of the recordings that use it alone.
    Needs at least two such sources; font_sets holds one entry per window of features."""
    from train.feature_study import _restrict, held_out_masks
    from train.models import train_model

    if len(font_sets) != len(features.X):
        raise InstrumentIdError(f"cross-source thresholds need the sources of every window: {len(font_sets)} for "
                                f"{len(features.X)} windows")
    sources = sources_used_alone(font_sets)
    if len(sources) < 2:
        raise InstrumentIdError("cross-source thresholds need at least two timbre sources each used alone by some "
                                f"recordings; this corpus has {sources or 'none'}")
    Ys, Ps, models = [], [], []
    for source in tqdm(sources, desc=f"cross-source thresholds ({name})", unit="source", leave=False):
        fit, score = held_out_masks(font_sets, source)
        target = score & (features.variant == 0)
        model = train_model(_restrict(features, fit), name, seed=seed, **train_kwargs)
        Ys.append(features.Y[target])
        Ps.append(model.predict_features(features.X[target])[0])  # (n_source, 11)
        models.append(model)
    return OutOfSource(Y=np.concatenate(Ys), P=np.concatenate(Ps), sources=sources, models=models)
