"""Verified model folders: the writer, the checker and the loader (TensorFlow and skops load only when needed)."""

from model_zoo.zoo import ZooModel, add_file_to_manifest, load_model, save_model_dir, verify_model_dir

__all__ = ["ZooModel", "add_file_to_manifest", "load_model", "save_model_dir", "verify_model_dir"]
