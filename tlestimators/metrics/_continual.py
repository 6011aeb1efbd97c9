"""Continual-learning metrics: accuracy matrix, average accuracy, forgetting, BWT/FWT."""

__all__ = []
