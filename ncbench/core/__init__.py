"""Torch-free facts every layer shares."""
