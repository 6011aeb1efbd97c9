"""Losses as pure tensor functions, with thin ``nn.Module`` wrappers (skada's layering).

Domain adaptation (DANN, CORAL, MMD) and continual learning (EWC, distillation) live
here side by side; estimators add them to the task loss as ``base + weight * extra``.
"""

from __future__ import annotations

import torch  # noqa: F401

__all__: list[str] = []

# ---- domain adaptation (DANN, CORAL, MMD) ----
__all__ += [
    "gradient_reversal",
    "GradientReversalFunction",
    "GradientReversal",
    "dann_loss",
    "DANNLoss",
    "coral_loss",
    "CORALLoss",
    "mmd_loss",
    "MMDLoss",
]

from torch import nn as _nn  # noqa: E402
from torch.nn import functional as _F  # noqa: E402


class GradientReversalFunction(torch.autograd.Function):
    """Identity on the forward pass; multiplies the gradient by ``-coeff`` backwards.

    The reversal layer of Ganin & Lempitsky (2015): the layers below it are pushed to
    *increase* whatever loss the layers above it minimise.
    """

    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.coeff, None


def gradient_reversal(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """``x`` unchanged forward; gradient ``-coeff * grad`` backward.

    Parameters
    ----------
    x : torch.Tensor
        Features (any shape).
    coeff : float, default=1.0
        Scale of the reversed gradient (``>= 0``).

    Returns
    -------
    torch.Tensor
        A tensor equal to ``x``.
    """
    if coeff < 0:
        raise ValueError(f"coeff must be >= 0, got {coeff!r}.")
    return GradientReversalFunction.apply(x, coeff)


class GradientReversal(_nn.Module):
    """Module wrapper of :func:`gradient_reversal`; ``coeff`` may be changed in place."""

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = coeff

    def forward(self, x):
        return gradient_reversal(x, self.coeff)

    def extra_repr(self):
        return f"coeff={self.coeff}"


def dann_loss(domain_logits: torch.Tensor, is_target: torch.Tensor, weight=None) -> torch.Tensor:
    """Domain-classification loss of DANN (Ganin et al., 2016).

    Parameters
    ----------
    domain_logits : torch.Tensor of shape (N,), (N, 1) or (N, 2)
        Raw scores of the domain classifier: one logit (binary cross-entropy with
        logits; the logit says "target") or two (softmax cross-entropy over
        source/target). Never probabilities: a softmax over a single output is the
        constant 1.0 and carries no gradient.
    is_target : torch.Tensor of shape (N,)
        1 (or True) for target-domain samples, 0 for source.
    weight : torch.Tensor of shape (N,), default=None
        Per-sample weights (e.g. to balance unequal domain counts).

    Returns
    -------
    torch.Tensor
        Scalar mean loss. Put the features through :func:`gradient_reversal` before
        the domain classifier so the extractor *maximises* it.
    """
    is_target = is_target.reshape(-1)
    if domain_logits.shape[0] != is_target.shape[0]:
        raise ValueError(
            f"domain_logits has {domain_logits.shape[0]} rows but is_target has "
            f"{is_target.shape[0]}."
        )
    if domain_logits.ndim == 2 and domain_logits.shape[1] == 2:
        per = _F.cross_entropy(domain_logits, is_target.long(), reduction="none")
    elif domain_logits.ndim == 1 or (domain_logits.ndim == 2 and domain_logits.shape[1] == 1):
        per = _F.binary_cross_entropy_with_logits(
            domain_logits.reshape(-1), is_target.to(domain_logits.dtype), reduction="none"
        )
    else:
        raise ValueError(
            "domain_logits must have shape (N,), (N, 1) or (N, 2), got "
            f"{tuple(domain_logits.shape)}."
        )
    if weight is None:
        return per.mean()
    weight = weight.reshape(-1).to(per.dtype)
    return (per * weight).sum() / weight.sum().clamp_min(1e-12)


class DANNLoss(_nn.Module):
    """Module wrapper of :func:`dann_loss` (reversal included): ``forward(features,
    is_target, domain_classifier)`` reverses the features with ``coeff`` then scores them."""

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = coeff

    def forward(self, features, is_target, domain_classifier):
        return dann_loss(domain_classifier(gradient_reversal(features, self.coeff)), is_target)


def _check_pair(fs, ft, name):
    if fs.ndim != 2 or ft.ndim != 2 or fs.shape[1] != ft.shape[1]:
        raise ValueError(
            f"{name} needs 2-D source and target features of equal width, got "
            f"{tuple(fs.shape)} and {tuple(ft.shape)}."
        )


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, 2016): ``||C_s - C_t||_F^2 / (4 d^2)``.

    Parameters
    ----------
    source, target : torch.Tensor of shape (n_s, d), (n_t, d)
        Features of each domain (at least 2 rows each).
    """
    _check_pair(source, target, "coral_loss")
    if source.shape[0] < 2 or target.shape[0] < 2:
        raise ValueError("coral_loss needs at least 2 samples per domain to estimate covariances.")
    d = source.shape[1]

    def cov(x):
        xc = x - x.mean(0, keepdim=True)
        return xc.T @ xc / (x.shape[0] - 1)

    return ((cov(source) - cov(target)) ** 2).sum() / (4.0 * d * d)


class CORALLoss(_nn.Module):
    """Module wrapper of :func:`coral_loss`."""

    def forward(self, source, target):
        return coral_loss(source, target)


def mmd_loss(source: torch.Tensor, target: torch.Tensor, sigmas=None) -> torch.Tensor:
    """Squared maximum mean discrepancy with a sum of Gaussian kernels (biased estimate).

    Parameters
    ----------
    source, target : torch.Tensor of shape (n_s, d), (n_t, d)
    sigmas : sequence of float, default=None
        Kernel bandwidths; ``None`` uses the median pairwise distance times
        ``(0.25, 0.5, 1, 2, 4)`` (Gretton et al., 2012; Long et al., 2015).
    """
    _check_pair(source, target, "mmd_loss")
    x = torch.cat([source, target])
    d2 = torch.cdist(x, x).pow(2)
    if sigmas is None:
        med = d2.detach()[d2.detach() > 0].median() if (d2 > 0).any() else d2.new_tensor(1.0)
        sigmas2 = [med * f for f in (0.0625, 0.25, 1.0, 4.0, 16.0)]
    else:
        sigmas2 = [float(s) ** 2 for s in sigmas]
    k = sum(torch.exp(-d2 / (2 * s2)) for s2 in sigmas2)
    n = source.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class MMDLoss(_nn.Module):
    """Module wrapper of :func:`mmd_loss`."""

    def __init__(self, sigmas=None):
        super().__init__()
        self.sigmas = sigmas

    def forward(self, source, target):
        return mmd_loss(source, target, self.sigmas)


# ---- continual learning (EWC, distillation) ----
__all__ += ["ewc_penalty", "EWCPenalty", "distillation_loss", "DistillationLoss"]


def _leading_slice(param, ref):
    """``param`` cut to ``ref``'s shape along every dimension.

    A classifier that grew new output rows since the anchor was taken is compared on
    its old rows only; the new rows are free.
    """
    if param.shape == ref.shape:
        return param
    if param.dim() != ref.dim() or any(p < r for p, r in zip(param.shape, ref.shape)):
        raise ValueError(
            f"parameter of shape {tuple(param.shape)} cannot be compared with an anchor of "
            f"shape {tuple(ref.shape)}; a parameter may only grow."
        )
    return param[tuple(slice(0, r) for r in ref.shape)]


def ewc_penalty(params, anchors, fishers):
    """Elastic weight consolidation: ``0.5 * sum_i F_i * (theta_i - theta*_i) ** 2``.

    Parameters
    ----------
    params : iterable of Tensor
        Current parameters ``theta``.
    anchors : iterable of Tensor
        Parameters ``theta*`` after the previous experience(s), one per parameter.
    fishers : iterable of Tensor
        Diagonal Fisher information ``F`` (same shapes as ``anchors``). A parameter
        that grew since (new classifier rows) is penalised on its old part only.

    Returns
    -------
    Tensor
        A scalar; multiply by ``lambda`` and add to the task loss.

    References
    ----------
    .. [1] J. Kirkpatrick et al., "Overcoming catastrophic forgetting in neural
       networks", PNAS 2017.
    """
    total = None
    for p, a, f in zip(params, anchors, fishers):
        term = (f * (_leading_slice(p, a) - a) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return 0.5 * total


class EWCPenalty(_nn.Module):
    """Module wrapper of :func:`ewc_penalty` holding the anchors and Fisher diagonals."""

    def __init__(self, anchors, fishers):
        super().__init__()
        self.anchors = [a.detach() for a in anchors]
        self.fishers = [f.detach() for f in fishers]

    def forward(self, params):
        return ewc_penalty(params, self.anchors, self.fishers)


def distillation_loss(student_logits, teacher_logits, temperature=2.0):
    """Knowledge distillation (learning without forgetting) on the teacher's classes.

    ``T**2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the
    batch. Only the first ``teacher_logits.shape[1]`` student outputs are used, so a
    student that has grown new classes is distilled on the old ones.

    Parameters
    ----------
    student_logits : Tensor of shape (N, C_student)
    teacher_logits : Tensor of shape (N, C_teacher), C_teacher <= C_student
    temperature : float, default=2.0
        Softening temperature ``T`` (Li & Hoiem use 2). The ``T**2`` factor keeps the
        gradient scale independent of ``T`` (Hinton et al.).

    Returns
    -------
    Tensor
        A scalar.

    References
    ----------
    .. [1] Z. Li and D. Hoiem, "Learning without Forgetting", ECCV 2016 / TPAMI 2018.
    .. [2] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
       Network", 2015.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")
    c = teacher_logits.shape[1]
    if student_logits.shape[1] < c:
        raise ValueError(
            f"student has {student_logits.shape[1]} outputs, fewer than the teacher's {c}."
        )
    t = temperature
    log_p_student = _F.log_softmax(student_logits[:, :c] / t, dim=1)
    p_teacher = _F.softmax(teacher_logits.detach() / t, dim=1)
    return _F.kl_div(log_p_student, p_teacher, reduction="batchmean") * (t * t)


class DistillationLoss(_nn.Module):
    """Module wrapper of :func:`distillation_loss`."""

    def __init__(self, temperature=2.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits, teacher_logits):
        return distillation_loss(student_logits, teacher_logits, self.temperature)
