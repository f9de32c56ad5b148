"""model_zoo package."""
