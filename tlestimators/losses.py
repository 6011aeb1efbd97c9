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


# ---- domain adaptation: CDAN, entropy, information maximisation, pseudo-labels ----
__all__ += [
    "entropy",
    "conditional_features",
    "cdan_entropy_weights",
    "cdan_loss",
    "CDANLoss",
    "information_maximization_loss",
    "InformationMaximizationLoss",
    "pseudo_label_loss",
]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-row Shannon entropy (nats) of ``softmax(logits)``, shape ``(N,)``."""
    logp = _F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def conditional_features(features: torch.Tensor, probs: torch.Tensor,
                         random_matrices=None) -> torch.Tensor:
    """CDAN's multilinear map: the flattened outer product ``f (x) g`` of features
    ``f`` (N, d) and class probabilities ``g`` (N, C), shape ``(N, d * C)``.

    With ``random_matrices=(R_f, R_g)`` of shapes (d, m) and (C, m) it is the randomised
    map ``(f R_f) * (g R_g) / sqrt(m)`` of shape (N, m) (Long et al., 2018, Sec. 3.1),
    used when ``d * C`` is large.
    """
    if features.ndim != 2 or probs.ndim != 2 or features.shape[0] != probs.shape[0]:
        raise ValueError(
            "conditional_features needs (N, d) features and (N, C) probabilities, got "
            f"{tuple(features.shape)} and {tuple(probs.shape)}."
        )
    if random_matrices is not None:
        rf, rg = random_matrices
        return (features @ rf) * (probs @ rg) / float(rf.shape[1]) ** 0.5
    return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)


def cdan_entropy_weights(logits: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """CDAN+E sample weights ``w = 1 + exp(-H(p))``, normalised so that each domain's
    weights sum to the same total (confident samples count more; no gradient).

    Returns weights of shape ``(N,)`` summing to ``N``.
    """
    with torch.no_grad():
        w = 1.0 + torch.exp(-entropy(logits.float()))
        t = is_target.reshape(-1).bool()
        out = torch.zeros_like(w)
        parts = [m for m in (t, ~t) if m.any()]
        for m in parts:
            out[m] = w[m] / w[m].sum()
        return out * (w.shape[0] / len(parts))


def cdan_loss(domain_logits: torch.Tensor, is_target: torch.Tensor,
              weight=None) -> torch.Tensor:
    """Conditional adversarial loss (CDAN, Long et al., 2018): the domain loss of
    :func:`dann_loss` on a discriminator fed :func:`conditional_features`, optionally
    weighted by :func:`cdan_entropy_weights` (CDAN+E).

    Parameters
    ----------
    domain_logits : torch.Tensor of shape (N,), (N, 1) or (N, 2)
        Discriminator scores of the (reversed) conditional features.
    is_target : torch.Tensor of shape (N,)
    weight : torch.Tensor of shape (N,), default=None
        Per-sample weights (``None``: plain CDAN).
    """
    return dann_loss(domain_logits, is_target, weight=weight)


class CDANLoss(_nn.Module):
    """Module wrapper: ``forward(features, logits, is_target, discriminator)`` reverses
    the conditional features with ``coeff`` and returns :func:`cdan_loss` (entropy
    weighted when ``entropy_conditioning``). The class probabilities enter the map
    without gradient, as in the authors' code."""

    def __init__(self, coeff: float = 1.0, entropy_conditioning: bool = True):
        super().__init__()
        self.coeff = coeff
        self.entropy_conditioning = entropy_conditioning

    def forward(self, features, logits, is_target, discriminator, random_matrices=None):
        h = conditional_features(features, _F.softmax(logits, 1).detach(), random_matrices)
        w = cdan_entropy_weights(logits, is_target) if self.entropy_conditioning else None
        return cdan_loss(discriminator(gradient_reversal(h, self.coeff)), is_target, w)


def information_maximization_loss(logits: torch.Tensor, diversity_weight: float = 1.0,
                                  eps: float = 1e-6) -> torch.Tensor:
    """Information maximisation (Hu et al., 2017; SHOT, Liang et al., 2020):
    ``mean_i H(p_i) - diversity_weight * H(mean_i p_i)``.

    Minimising it makes each prediction confident (low conditional entropy) while
    keeping the predicted classes diverse over the batch (high marginal entropy), which
    rules out the trivial "one class for everything" solution.

    Parameters
    ----------
    logits : torch.Tensor of shape (N, C)
        Class scores of (unlabeled target) samples.
    diversity_weight : float, default=1.0
    eps : float, default=1e-6
        Floor inside the log of the marginal.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}.")
    cond = entropy(logits).mean()
    p_mean = _F.softmax(logits, 1).mean(0)
    marginal = -(p_mean * torch.log(p_mean + eps)).sum()
    return cond - diversity_weight * marginal


class InformationMaximizationLoss(_nn.Module):
    """Module wrapper of :func:`information_maximization_loss`."""

    def __init__(self, diversity_weight: float = 1.0):
        super().__init__()
        self.diversity_weight = diversity_weight

    def forward(self, logits):
        return information_maximization_loss(logits, self.diversity_weight)


def pseudo_label_loss(logits: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """Self-training on confident predictions: cross-entropy of ``logits`` against
    their own argmax on rows whose top probability is ``>= threshold``, averaged over
    all rows (rows below the threshold contribute 0), as in FixMatch's unlabeled loss
    without augmentation. The pseudo-labels carry no gradient.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}.")
    with torch.no_grad():
        conf, pseudo = _F.softmax(logits, 1).max(1)
        mask = (conf >= threshold).to(logits.dtype)
    return (_F.cross_entropy(logits, pseudo, reduction="none") * mask).mean()


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


# ---- continual learning (ER-ACE, empirical Fisher) ----
__all__ += ["er_ace_loss", "ERACELoss", "per_example_sq_grads", "empirical_fisher",
            "accumulate_fisher"]


def er_ace_loss(logits, target, current_classes, weight=None):
    """Asymmetric cross-entropy of ER-ACE (Caccia et al., 2022).

    A row whose label is one of ``current_classes`` (the classes of the experience being
    learnt) is scored by a softmax over those classes only, so it does not push the
    other classes' logits down; any other row (a replayed example of an old class) is
    scored over every output, as in plain cross-entropy.

    Parameters
    ----------
    logits : Tensor of shape (N, C)
    target : Tensor of shape (N,), int64
        Output index of each row's label.
    current_classes : bool Tensor of shape (C,)
        Outputs of the current experience's classes.
    weight : Tensor of shape (C,), default=None
        Class weights, as ``torch.nn.functional.cross_entropy`` takes them (the mean is
        then weighted by ``weight[target]``).

    Returns
    -------
    Tensor
        A scalar.

    References
    ----------
    .. [1] L. Caccia, R. Aljundi, N. Asadi, T. Tuytelaars, J. Pineau, E. Belilovsky,
       "New Insights on Reducing Abrupt Representation Change in Online Continual
       Learning", ICLR 2022.
    """
    if logits.ndim != 2 or current_classes.shape != logits.shape[1:]:
        raise ValueError(
            f"er_ace_loss needs logits (N, C) and a mask of C outputs, got logits of shape "
            f"{tuple(logits.shape)} and a mask of shape {tuple(current_classes.shape)}."
        )
    target = target.to(logits.device)
    mask = current_classes.to(device=logits.device, dtype=torch.bool)
    own = mask[target]
    masked = logits.masked_fill(~mask, float("-inf"))
    return _F.cross_entropy(torch.where(own[:, None], masked, logits), target, weight=weight)


class ERACELoss(_nn.Module):
    """Module wrapper of :func:`er_ace_loss` holding the current classes' mask."""

    def __init__(self, current_classes, weight=None):
        super().__init__()
        self.current_classes = current_classes
        self.weight = weight

    def forward(self, logits, target):
        return er_ace_loss(logits, target, self.current_classes, self.weight)


def _tree_map(fn, x):
    from torch.utils._pytree import tree_map

    return tree_map(fn, x)


def per_example_sq_grads(module, params, x, y):
    """``{name: sum over the rows of (d CE(module(x_i), y_i) / d param) ** 2}``.

    Parameters
    ----------
    module : nn.Module
        Maps a batch ``x`` (a tensor, or a dict/tuple of tensors with the batch first)
        to logits.
    params : dict of str to Parameter
        The parameters to differentiate, named as ``module.named_parameters()`` names
        them.
    x : Tensor or pytree of Tensors
    y : Tensor of shape (N,), int64

    Returns
    -------
    dict of str to Tensor
        Same shapes as ``params``.

    Notes
    -----
    Per-example gradients come from ``torch.func.vmap``; a module vmap cannot trace
    (data-dependent control flow) falls back to one backward pass per row.
    """
    from torch.func import functional_call, grad, vmap

    detached = {n: p.detach() for n, p in params.items()}

    def loss_one(p, xi, yi):
        xi = _tree_map(lambda t: t.unsqueeze(0), xi)
        out = functional_call(module, p, (xi,), strict=False)
        return _F.cross_entropy(out, yi.unsqueeze(0))

    try:
        grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(detached, x, y)
        return {n: (g**2).sum(0) for n, g in grads.items()}
    except Exception:  # noqa: BLE001 - any tracing failure: the exact slow path below
        out = {n: torch.zeros_like(p) for n, p in params.items()}
        for i in range(int(y.shape[0])):
            xi = _tree_map(lambda t, i=i: t[i : i + 1], x)
            module.zero_grad(set_to_none=True)
            _F.cross_entropy(module(xi), y[i : i + 1]).backward()
            for n, p in params.items():
                if p.grad is not None:
                    out[n] += p.grad.detach() ** 2
        module.zero_grad(set_to_none=True)
        return out


def empirical_fisher(module, batches, params=None, device="cpu"):
    """Diagonal empirical Fisher information of ``module`` on labelled batches.

    ``F = mean over examples i of (d log p(y_i | x_i) / d theta) ** 2``: the squared
    *per-example* gradient of the log-likelihood of the true label. Squaring a
    mini-batch's mean gradient instead, as some libraries do, nearly vanishes once the
    model fits the data, and an EWC penalty built on it then holds nothing.

    Parameters
    ----------
    module : nn.Module
        Maps a batch to logits. It is put in eval mode for the computation (dropout
        off) and its mode is restored afterwards.
    batches : iterable of (x, y)
        Mini-batches, e.g. a ``DataLoader``; ``y`` holds output indices.
    params : dict of str to Parameter, default=None
        Parameters to compute it for; default: those with ``requires_grad``.
    device : str or torch.device, default="cpu"
        Where batches are moved before the forward pass.

    Returns
    -------
    dict of str to Tensor
        The Fisher diagonal of each parameter, on the CPU.

    References
    ----------
    .. [1] J. Kirkpatrick et al., "Overcoming catastrophic forgetting in neural
       networks", PNAS 2017.
    .. [2] F. Kunstner, L. Balles, P. Hennig, "Limitations of the empirical Fisher
       approximation for natural gradient descent", NeurIPS 2019.
    """
    if params is None:
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = module.training
    module.eval()
    n_seen = 0
    try:
        for xb, yb in batches:
            xb = _tree_map(lambda t: t.to(device) if torch.is_tensor(t) else t, xb)
            yb = torch.as_tensor(yb).to(device)
            for n, g2 in per_example_sq_grads(module, params, xb, yb).items():
                fisher[n] += g2
            n_seen += int(yb.shape[0])
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    return {n: (f / max(n_seen, 1)).cpu() for n, f in fisher.items()}


def accumulate_fisher(old, new):
    """Online EWC: ``new + old``, parameter by parameter.

    A parameter that grew since ``old`` was computed (a classifier with new output
    rows) adds ``old`` to its leading block; the new rows keep only ``new``.

    Parameters
    ----------
    old, new : dict of str to Tensor

    Returns
    -------
    dict of str to Tensor
        One entry per key of ``new``.
    """
    out = {}
    for n, f in new.items():
        f = f.clone()
        prev = old.get(n)
        if prev is not None:
            _leading_slice(f, prev).add_(prev)
        out[n] = f
    return out
