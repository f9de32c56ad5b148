"""Verified model folders and the one model interface: the writer, the checker and the loader (TensorFlow and skops
load only when needed)."""

from model_zoo.loader import open_model, shipped_model_dir
from model_zoo.model import ClipPrediction, Model
from model_zoo.zoo import ZooModel, add_file_to_manifest, load_model, save_model_dir, verify_model_dir

__all__ = ["ClipPrediction", "Model", "ZooModel", "add_file_to_manifest", "load_model", "open_model",
           "save_model_dir", "shipped_model_dir", "verify_model_dir"]
