"""Tianmu web service: api."""
