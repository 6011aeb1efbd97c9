"""Losses as pure tensor functions, with thin ``nn.Module`` wrappers (skada's layering).

Domain adaptation (DANN, CORAL, MMD) and continual learning (EWC, distillation) live
here side by side; estimators add them to the task loss as ``base + weight * extra``.
"""

from __future__ import annotations

import torch  # noqa: F401

__all__: list[str] = []

# ---- domain adaptation (DANN, CORAL, MMD) ----

# ---- continual learning (EWC, distillation) ----
