"""Tianmu (天目): network security situation awareness."""

__version__ = "0.1.0"
__all__ = ["__version__"]
