"""Estimators; import them from the top-level package."""
