"""Tianmu web service: web."""
