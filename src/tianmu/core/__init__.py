"""The small core every capability builds on: models, errors, settings."""
