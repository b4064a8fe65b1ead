"""Tianmu web service: api routes."""
