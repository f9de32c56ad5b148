"""The server's configuration: which model folders to serve, the A/B arms, the prediction log and the size limits.

A config is a JSON or TOML file (or the same data as a dict passed to create_app):

    log_db = "runs/serving/predictions.sqlite"  # or "postgresql://user@host:5432/db": one log for many replicas
    max_upload_bytes = 10485760           # request bodies above this get 413 (all routes but /v2/analyze)
    max_analyze_bytes = 67108864          # audio decoded in memory (predict, compare) above this, as float32, gets 413
    max_analyze_upload_bytes = 209715200  # POST /v2/analyze bodies above this get 413 (files stream: memory stays flat)
    max_analyze_seconds = 14400           # POST /v2/analyze recordings longer than this (header's length) get 413
    api_keys = "keys.txt"                 # hashed API keys with roles (serving/keys.py); absent: open mode
    allow_world_readable_keys = false     # a key file readable by every user is refused unless this is true
    feedback_window_seconds = 604800      # feedback on a prediction is taken for this long after it (7 days)
    rate_limit_storage = "sqlite://"      # default: limits shared by this replica's workers; "redis://host:6379":
                                          # by every replica too (serving/rate_limits.py)
    [rate_limits.client]                  # per role (client, admin, open): serving/rate_limits.py
    requests = "20/second;600/minute"
    audio_seconds = "1800/minute"
    [models.mlp]
    path = "model_zoo/models/mlp"         # relative paths resolve against the config file's folder
    runtime = "tflite"                    # "tflite" (edge runtime) or "zoo" (the zoo's Keras/skops loader)
    tflite_file = "model_float32.tflite"
    [models.rf]
    path = "model_zoo/models/rf"
    runtime = "zoo"
    [ab.arms.A]
    model = "mlp"
    weight = 0.5
    [ab.arms.B]
    model = "rf"
    weight = 0.5

Unknown keys, unknown models and bad values raise InstrumentIdError naming the key, never a silent default.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instrument_id.errors import InstrumentIdError
from model_zoo.loader import FLOAT_TFLITE_FILE, RAW_AUDIO_TFLITE_FILE, shipped_model_dir
from serving.rate_limits import DEFAULT_STORAGE, RoleLimits, check_storage_uri, parse_rate_limits

DEFAULT_LOG_DB = Path("runs/serving/predictions.sqlite")
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ANALYZE_BYTES = 64 * 1024 * 1024  # ~3 min of 44.1 kHz stereo as float32
DEFAULT_MAX_ANALYZE_UPLOAD_BYTES = 200 * 1024 * 1024  # ~20 min of 16-bit 44.1 kHz stereo WAV, hours of MP3
DEFAULT_MAX_ANALYZE_SECONDS = 4 * 3600.0  # bounds the CPU a tiny file declaring days of silence could ask for
DEFAULT_TFLITE_FILE = FLOAT_TFLITE_FILE
RUNTIMES = ("tflite", "zoo")
DEFAULT_FEEDBACK_WINDOW_SECONDS = 7 * 24 * 3600.0
TOP_KEYS = {"models", "ab", "log_db", "max_upload_bytes", "max_analyze_bytes", "max_analyze_upload_bytes", "max_analyze_seconds",
            "api_keys", "allow_world_readable_keys", "feedback_window_seconds", "rate_limits", "rate_limit_storage"}
MODEL_KEYS = {"path", "runtime", "tflite_file"}
ARM_KEYS = {"model", "weight"}
POSTGRES_URL_PREFIXES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class ModelConfig:
    """One model folder to serve and the runtime to serve it with."""

    name: str
    path: Path
    runtime: str
    tflite_file: str


@dataclass(frozen=True)
class ArmConfig:
    """One A/B arm: the model it routes to and its share of the traffic (weights are normalized)."""

    name: str
    model: str
    weight: float


@dataclass(frozen=True)
class ServingConfig:
    """The validated configuration."""

    models: tuple[ModelConfig, ...]
    arms: tuple[ArmConfig, ...]
    log_db: Path | str  # a SQLite file, or a PostgreSQL URL kept as the string it was given
    max_upload_bytes: int
    max_analyze_bytes: int
    max_analyze_upload_bytes: int
    max_analyze_seconds: float
    api_keys: Path | None = None  # the key file; None: open mode (every request may do everything)
    allow_world_readable_keys: bool = False
    feedback_window_seconds: float = DEFAULT_FEEDBACK_WINDOW_SECONDS
    rate_limits: dict[str, RoleLimits] = field(default_factory=lambda: parse_rate_limits(None, "defaults"))
    rate_limit_storage: str = DEFAULT_STORAGE

    def model_names(self) -> list[str]:
        """Configured model names in config order."""
        return [model.name for model in self.models]


def default_config_data(models_dir: Path | None = None) -> dict[str, Any]:
    """The shipped models: the musicnn embedding + MLP on its raw-audio TFLite file (the real-audio model), the seed
    MLP on its float32 TFLite file and the RandomForest through the zoo. A/B: musicnn takes half the traffic, the
    two seed models (the reference it is compared against) a quarter each; without musicnn, mlp and rf 50:50.
    models_dir: a folder holding mlp/, rf/ and perhaps musicnn/ to serve the same way (default: the shipped ones)."""
    folder = shipped_model_dir if models_dir is None else models_dir.joinpath
    models = {
        "mlp": {"path": str(folder("mlp")), "runtime": "tflite", "tflite_file": FLOAT_TFLITE_FILE},
        "rf": {"path": str(folder("rf")), "runtime": "zoo"},
    }
    arms = {"A": {"model": "mlp", "weight": 0.5}, "B": {"model": "rf", "weight": 0.5}}
    if folder("musicnn").is_dir():
        models["musicnn"] = {"path": str(folder("musicnn")), "runtime": "tflite",
                             "tflite_file": RAW_AUDIO_TFLITE_FILE}
        arms = {"A": {"model": "musicnn", "weight": 0.5}, "B": {"model": "mlp", "weight": 0.25},
                "C": {"model": "rf", "weight": 0.25}}
    return {"models": models, "ab": {"arms": arms}}


def _check_keys(where: str, data: Any, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InstrumentIdError(f"{where}: expected a table/object, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InstrumentIdError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(data))
    if missing:
        raise InstrumentIdError(f"{where}: missing key {missing[0]!r}")
    return data


def is_postgres_url(log_db: str) -> bool:
    """Whether a log_db setting names a PostgreSQL server ("postgresql://..." or "postgres://...")."""
    return log_db.startswith(POSTGRES_URL_PREFIXES)


def _log_db(value: Any, base_dir: Path, where: str) -> Path | str:
    """A PostgreSQL URL as given, or the SQLite file's path resolved against base_dir."""
    if not isinstance(value, str) or not value:
        raise InstrumentIdError(f"{where}: log_db must be a file path or a postgresql:// URL, got {value!r}")
    if is_postgres_url(value):
        return value
    if "://" in value:
        raise InstrumentIdError(f"{where}: log_db {value.split('://')[0]}:// is not supported: "
                                "give a SQLite file path or a postgresql:// URL")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _positive_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InstrumentIdError(f"{where}: expected a positive integer number of bytes, got {value!r}")
    return value


def _positive_seconds(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InstrumentIdError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _model(name: str, data: Any, base_dir: Path, where: str) -> ModelConfig:
    entry = _check_keys(f"{where}: models.{name}", data, MODEL_KEYS, {"path"})
    runtime = entry.get("runtime", "zoo")
    if runtime not in RUNTIMES:
        raise InstrumentIdError(f"{where}: models.{name}.runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    tflite_file = entry.get("tflite_file", DEFAULT_TFLITE_FILE)
    if not isinstance(tflite_file, str) or Path(tflite_file).name != tflite_file or not tflite_file.endswith(".tflite"):
        raise InstrumentIdError(f"{where}: models.{name}.tflite_file must be a .tflite file name, got {tflite_file!r}")
    if not isinstance(entry["path"], str) or not entry["path"]:
        raise InstrumentIdError(f"{where}: models.{name}.path must be a folder path")
    path = Path(entry["path"]).expanduser()
    return ModelConfig(name=name, path=path if path.is_absolute() else base_dir / path, runtime=runtime, tflite_file=tflite_file)


def _arms(data: Any, model_names: list[str], where: str) -> tuple[ArmConfig, ...]:
    if data is None:  # no A/B section: every model one arm of equal weight, named A, B, C, ...
        return tuple(ArmConfig(chr(ord("A") + i), name, 1.0) for i, name in enumerate(model_names[:26]))
    arms_data = _check_keys(f"{where}: ab", data, {"arms"}, {"arms"})["arms"]
    if not isinstance(arms_data, dict) or not arms_data:
        raise InstrumentIdError(f"{where}: ab.arms must name at least one arm")
    arms = []
    for arm_name, arm in arms_data.items():
        arm = _check_keys(f"{where}: ab.arms.{arm_name}", arm, ARM_KEYS, {"model"})
        if arm["model"] not in model_names:
            raise InstrumentIdError(
                f"{where}: ab.arms.{arm_name}.model {arm['model']!r} is not a configured model ({', '.join(model_names)})"
            )
        weight = arm.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise InstrumentIdError(f"{where}: ab.arms.{arm_name}.weight must be a positive number, got {weight!r}")
        arms.append(ArmConfig(str(arm_name), arm["model"], float(weight)))
    return tuple(arms)


def _key_file(value: Any, base_dir: Path, where: str) -> Path | None:
    """The key file's path resolved against base_dir, or None (open mode)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InstrumentIdError(f"{where}: api_keys must be the path of a key file, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InstrumentIdError(f"{where}: expected true or false, got {value!r}")
    return value


def parse_config(data: dict[str, Any] | None, base_dir: Path | None = None, where: str = "config") -> ServingConfig:
    """Validate config data (None: the shipped defaults); relative paths resolve against base_dir (default: cwd)."""
    data = default_config_data() if data is None else data
    base_dir = base_dir or Path.cwd()
    _check_keys(where, data, TOP_KEYS, {"models"})
    models_data = data["models"]
    if not isinstance(models_data, dict) or not models_data:
        raise InstrumentIdError(f"{where}: models must be a table of name -> {{path, runtime, tflite_file}}")
    models = tuple(_model(str(name), entry, base_dir, where) for name, entry in models_data.items())
    names = [model.name for model in models]
    arms = _arms(data.get("ab"), names, where)
    return ServingConfig(
        models=models,
        arms=arms,
        log_db=_log_db(data.get("log_db", str(DEFAULT_LOG_DB)), base_dir, where),
        max_upload_bytes=_positive_int(f"{where}: max_upload_bytes", data.get("max_upload_bytes", DEFAULT_MAX_UPLOAD_BYTES)),
        max_analyze_bytes=_positive_int(f"{where}: max_analyze_bytes", data.get("max_analyze_bytes", DEFAULT_MAX_ANALYZE_BYTES)),
        max_analyze_upload_bytes=_positive_int(f"{where}: max_analyze_upload_bytes",
                                               data.get("max_analyze_upload_bytes", DEFAULT_MAX_ANALYZE_UPLOAD_BYTES)),
        max_analyze_seconds=_positive_seconds(f"{where}: max_analyze_seconds",
                                              data.get("max_analyze_seconds", DEFAULT_MAX_ANALYZE_SECONDS)),
        api_keys=_key_file(data.get("api_keys"), base_dir, f"{where}: api_keys"),
        allow_world_readable_keys=_flag(f"{where}: allow_world_readable_keys", data.get("allow_world_readable_keys", False)),
        feedback_window_seconds=_positive_seconds(f"{where}: feedback_window_seconds",
                                                  data.get("feedback_window_seconds", DEFAULT_FEEDBACK_WINDOW_SECONDS)),
        rate_limits=parse_rate_limits(data.get("rate_limits"), where),
        rate_limit_storage=check_storage_uri(data.get("rate_limit_storage", DEFAULT_STORAGE), f"{where}: rate_limit_storage"),
    )


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw data of a .json or .toml config file; unreadable or malformed files raise InstrumentIdError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InstrumentIdError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstrumentIdError(f"{path}: cannot read the config file ({exc})") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise InstrumentIdError(f"{path}: the config must be a JSON object")
            return data
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InstrumentIdError(f"{path}: malformed config ({exc})") from None
    raise InstrumentIdError(f"{path}: config files must end in .json or .toml")


def load_config(path: str | Path | None) -> ServingConfig:
    """Read and validate a config file (None: the shipped defaults, relative to the working directory)."""
    if path is None:
        return parse_config(None)
    path = Path(path)
    return parse_config(read_config_file(path), base_dir=path.resolve().parent, where=str(path))
