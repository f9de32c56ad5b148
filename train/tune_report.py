"""tuning.json and tuning.md: every trial of each side, its winner, and the two winners side by side.

Each `instrument-id tune` run replaces its own side of DIR/tuning.json and keeps the other; the side-by-side table
appears only when both sides were tuned on the same features (same corpus fingerprint, audio settings, augmentation
and split), since numbers from different data do not compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instrument_id.atomic import write_text_atomic
from instrument_id.errors import InstrumentIdError

REPORT_JSON = "tuning.json"
REPORT_MD = "tuning.md"
SIDES = ("mlp", "rf")
IDENTITY_KEYS = ("corpus_fingerprint", "params", "augment", "split", "seed")
TITLES = {"mlp": "MLP", "rf": "RandomForest"}


def features_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a feature file's config that decide whether two results were computed on the same data."""
    return {key: config.get(key) for key in IDENTITY_KEYS}


def _read_report(path: Path) -> dict[str, Any]:
    """An earlier tuning.json, or an empty report when there is none."""
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InstrumentIdError(f"{path}: cannot read the earlier tuning report ({exc}); move it away to start anew") from None
    if not isinstance(report, dict):
        raise InstrumentIdError(f"{path}: not a tuning report (expected a JSON object)")
    return report


def comparison(report: dict[str, Any]) -> dict[str, Any] | None:
    """The two winners' validation and test figures, when both sides exist and share their features."""
    sections = [report.get(side) for side in SIDES]
    if not all(sections):
        return None
    identities = [{k: s["features"].get(k) for k in IDENTITY_KEYS} for s in sections]
    if identities[0] != identities[1]:
        return {"rows": [], "note": "mlp and rf were tuned on different features; tune both on one file to compare"}
    rows = []
    for side, section in zip(SIDES, sections):
        winner = section["winner"]
        rows.append({
            "model": side, "model_dir": winner["model_dir"], "params": winner["params"],
            "search_objective": section["objective"]["name"], "search_value": winner["objective"],
            "valid_mAP": winner["metrics"]["valid"]["mAP"], "valid_macro_f1": winner["metrics"]["valid"]["macro_f1"],
            "test_macro_f1": winner["metrics"]["test"]["macro_f1"], "test_mAP": winner["metrics"]["test"]["mAP"],
            "weights_bytes": winner["weights_bytes"],
        })
    return {"rows": rows, "note": "selection used the validation split only; test is reported, never used to choose"}


def update_report(out_dir: str | Path, section: dict[str, Any]) -> dict[str, Any]:
    """Put one side's section into out_dir/tuning.json (keeping the other side), rewrite tuning.md; the report."""
    out_dir = Path(out_dir)
    earlier = _read_report(out_dir / REPORT_JSON)
    report: dict[str, Any] = {side: earlier.get(side) for side in SIDES}
    report[section["model"]] = section
    report["comparison"] = comparison(report)
    write_text_atomic(out_dir / REPORT_JSON, json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out_dir / REPORT_MD, render_markdown(report))
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "-".join(_fmt(v) for v in value)
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]


def _section_markdown(section: dict[str, Any]) -> list[str]:
    """One side: how it searched, every trial, the retrained winner."""
    objective, winner, feats = section["objective"], section["winner"], section["features"]
    lines = [
        f"## {TITLES[section['model']]}: {section['method']}", "",
        f"Objective: `{objective['name']}` ({objective['direction']}) on the {objective['split']} split: "
        f"{objective['definition']}.",
        f"Features: {feats['path'] or '(in memory)'} (corpus {str(feats['corpus_fingerprint'])[:12]}, "
        f"windows {feats['windows']}); budget {section['budget']} trials, seed {section['seed']}, "
        f"search {section['search_seconds']:.1f} s. Fixed: {section['fixed']}.", "",
    ]
    keys = list(section["trials"][0]["params"]) if section["trials"] else []
    extra = ["best_epoch", "epochs_trained"] if section["model"] == "mlp" else []
    header = ["trial", *keys, objective["name"], *extra, "fit s", ""]
    rows = [[t["trial"], *(t["params"].get(k) for k in keys), t["objective"], *(t.get(k) for k in extra),
             t.get("fit_seconds"), "winner" if t["trial"] == winner["trial"] else ""] for t in section["trials"]]
    lines += _table(header, rows)
    m = winner["metrics"]
    lines += [
        "",
        f"Winner: trial {winner['trial']} {winner['params']}, {objective['name']} {winner['objective']:.4f} "
        f"(retrained: {winner['objective_retrained']:.4f}), retrained in {winner['retrain_seconds']:.1f} s "
        f"into `{winner['model_dir']}` ({winner['weights_bytes'] / 1e6:.2f} MB weights).",
        f"Valid mAP {_fmt(m['valid']['mAP'])}, macro-F1 {_fmt(m['valid']['macro_f1'])}; "
        f"test mAP {_fmt(m['test']['mAP'])}, macro-F1 {_fmt(m['test']['macro_f1'])} (reported only).", "",
    ]
    return lines


def render_markdown(report: dict[str, Any], only: str | None = None) -> str:
    """tuning.md: each tuned side (or only one), then the side-by-side table when there is one."""
    lines = ["# Hyperparameter tuning", ""]
    for side in SIDES:
        if report.get(side) and only in (None, side):
            lines += _section_markdown(report[side])
    compared = report.get("comparison")
    if compared:
        lines += ["## Side by side", ""]
        if compared["rows"]:
            header = ["model", "folder", "valid mAP (AUC-PR)", "valid macro-F1", "test macro-F1", "test mAP", "weights MB"]
            lines += _table(header, [[r["model"], r["model_dir"], r["valid_mAP"], r["valid_macro_f1"], r["test_macro_f1"],
                                      r["test_mAP"], r["weights_bytes"] / 1e6] for r in compared["rows"]])
            lines.append("")
        lines += [compared["note"] + ".", ""]
    return "\n".join(lines)
