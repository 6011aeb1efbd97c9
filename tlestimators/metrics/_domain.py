"""Unsupervised model-selection scorers for domain adaptation (no target labels)."""

__all__ = []
