"""Training: corpora, windows, augmentation, feature cache, models and evaluation."""
