"""The road: the composition root that collects a job's inputs once, runs the engines and finishes.

Every job takes the same road (see docs/architecture.md): sources are collected once, the sibling
engines of the capabilities analyse their share, and `finish` annotates, saves and updates the
situation. This package is the only one that knows every capability.
"""
