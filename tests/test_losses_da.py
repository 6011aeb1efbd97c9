"""Domain-adaptation losses: gradient reversal, DANN, CORAL, MMD."""

import math

import pytest
import torch
from torch import nn

from tlestimators.losses import (
    CORALLoss,
    DANNLoss,
    GradientReversal,
    MMDLoss,
    coral_loss,
    dann_loss,
    gradient_reversal,
    mmd_loss,
)


def test_gradient_reversal_is_identity_forward_and_negates_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    y = gradient_reversal(x, 0.7)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * w)


def test_gradient_reversal_module_and_coeff_zero_blocks_gradient():
    x = torch.randn(4, 2, requires_grad=True)
    GradientReversal(0.0)(x).sum().backward()
    assert torch.count_nonzero(x.grad) == 0
    with pytest.raises(ValueError, match="coeff must be >= 0"):
        gradient_reversal(x, -1.0)


def test_reversal_flips_the_extractor_gradient_of_the_domain_loss():
    torch.manual_seed(0)
    extractor = nn.Sequential(nn.Linear(6, 8), nn.Tanh())
    domain = nn.Linear(8, 1)
    x = torch.randn(20, 6)
    is_t = torch.cat([torch.zeros(10), torch.ones(10)])

    def grads(reverse):
        extractor.zero_grad()
        domain.zero_grad()
        f = extractor(x)
        f = gradient_reversal(f, 1.0) if reverse else f
        dann_loss(domain(f), is_t).backward()
        return ([p.grad.clone() for p in extractor.parameters()],
                [p.grad.clone() for p in domain.parameters()])

    plain_f, plain_d = grads(False)
    rev_f, rev_d = grads(True)
    for gp, gr in zip(plain_f, rev_f):
        assert gp.abs().sum() > 0
        torch.testing.assert_close(gr, -gp)
    # the domain classifier itself is trained normally
    for gp, gr in zip(plain_d, rev_d):
        torch.testing.assert_close(gr, gp)


def test_dann_loss_one_logit_matches_bce_and_two_logits_match_ce():
    z = torch.tensor([2.0, -1.0, 0.5])
    t = torch.tensor([1, 0, 0])
    expected = nn.functional.binary_cross_entropy_with_logits(z, t.float())
    torch.testing.assert_close(dann_loss(z, t), expected)
    torch.testing.assert_close(dann_loss(z[:, None], t), expected)
    z2 = torch.randn(3, 2)
    torch.testing.assert_close(dann_loss(z2, t), nn.functional.cross_entropy(z2, t))
    w = torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(
        dann_loss(z, t, weight=w),
        nn.functional.binary_cross_entropy_with_logits(z[:1], t[:1].float()),
    )


def test_dann_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        dann_loss(torch.randn(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="rows"):
        dann_loss(torch.randn(4), torch.zeros(5))


def test_dann_loss_module_reverses():
    torch.manual_seed(0)
    f = torch.randn(8, 4, requires_grad=True)
    clf = nn.Linear(4, 1)
    t = torch.cat([torch.zeros(4), torch.ones(4)])
    DANNLoss(1.0)(f, t, clf).backward()
    g_rev = f.grad.clone()
    f.grad = None
    dann_loss(clf(f), t).backward()
    torch.testing.assert_close(g_rev, -f.grad)


def test_coral_loss_zero_for_equal_covariance_and_grows_with_mismatch():
    torch.manual_seed(0)
    a = torch.randn(200, 5)
    assert coral_loss(a, a + 3.0).item() == pytest.approx(0.0, abs=1e-6)  # shift-invariant
    small = coral_loss(a, torch.randn(200, 5)).item()
    big = coral_loss(a, 3.0 * torch.randn(200, 5)).item()
    assert big > 10 * small
    # the formula: ||Cs - Ct||_F^2 / (4 d^2)
    b = 2.0 * torch.randn(50, 5)
    cs, ct = torch.cov(a.T), torch.cov(b.T)
    torch.testing.assert_close(coral_loss(a, b), ((cs - ct) ** 2).sum() / (4 * 25))
    assert CORALLoss()(a, b).item() == pytest.approx(coral_loss(a, b).item())


def test_coral_loss_gradient_flows_and_validates():
    a = torch.randn(30, 4, requires_grad=True)
    coral_loss(a, 2 * torch.randn(30, 4)).backward()
    assert a.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 2 samples"):
        coral_loss(torch.randn(1, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="equal width"):
        coral_loss(torch.randn(5, 4), torch.randn(5, 3))


def test_mmd_loss_small_for_same_distribution_large_for_shift():
    torch.manual_seed(0)
    a, b = torch.randn(100, 3), torch.randn(100, 3)
    same = mmd_loss(a, b).item()
    shifted = mmd_loss(a, b + 2.0).item()
    assert shifted > 10 * max(same, 1e-4)
    assert mmd_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert MMDLoss(sigmas=[1.0])(a, b + 2.0).item() > MMDLoss(sigmas=[1.0])(a, b).item()
    x = a.clone().requires_grad_(True)
    mmd_loss(x, b + 1.0).backward()
    assert x.grad.abs().sum() > 0


# ---- hand-computed values (CORAL, MMD, CDAN, entropy, information maximisation) ----
def test_coral_loss_hand_computed():
    # C_s = [[2, 2], [2, 2]], C_t = [[0, 0], [0, 2]]: ||C_s - C_t||^2 = 12, / (4 * 2^2)
    s = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert coral_loss(s, t).item() == pytest.approx(0.75)


def test_mmd_loss_hand_computed():
    # one row each, one Gaussian kernel exp(-d^2 / 2): k_ss + k_tt - 2 k_st
    s, t = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    assert mmd_loss(s, t, sigmas=[1.0]).item() == pytest.approx(2 - 2 * math.exp(-0.5))


def test_entropy_hand_computed():
    from tlestimators.losses import entropy

    z = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = [math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    torch.testing.assert_close(entropy(z), torch.tensor(expected))


def test_conditional_features_outer_product_and_random_map():
    from tlestimators.losses import conditional_features

    f = torch.tensor([[1.0, 2.0]])
    p = torch.tensor([[0.25, 0.75]])
    torch.testing.assert_close(conditional_features(f, p), torch.tensor([[0.25, 0.5, 0.75, 1.5]]))
    eye = torch.eye(2)
    torch.testing.assert_close(conditional_features(f, p, (eye, eye)),
                               torch.tensor([[0.25, 1.5]]) / math.sqrt(2))
    with pytest.raises(ValueError, match="conditional_features needs"):
        conditional_features(f, torch.ones(2, 2))


def test_cdan_entropy_weights_and_weighted_loss_hand_computed():
    from tlestimators.losses import cdan_entropy_weights, cdan_loss

    # source rows: H = ln 2 -> w = 1.5; H = 0 -> w = 2; target row alone: w = 1.
    # Each domain normalised to sum 1, then scaled so all weights sum to N = 3.
    logits = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 0.0]])
    is_t = torch.tensor([0, 0, 1])
    w = cdan_entropy_weights(logits, is_t)
    torch.testing.assert_close(w, torch.tensor([1.5 / 3.5 * 1.5, 2 / 3.5 * 1.5, 1.5]))
    assert not w.requires_grad
    z = torch.tensor([0.3, -1.0, 2.0])
    per = nn.functional.binary_cross_entropy_with_logits(z, is_t.float(), reduction="none")
    torch.testing.assert_close(cdan_loss(z, is_t, w), (per * w).sum() / w.sum())


def test_cdan_loss_module_reverses_the_gradient_to_the_features():
    from tlestimators.losses import CDANLoss

    torch.manual_seed(0)
    f = torch.randn(6, 3, requires_grad=True)
    logits = torch.randn(6, 2)
    is_t = torch.tensor([0, 0, 0, 1, 1, 1])
    disc = nn.Linear(6, 1)
    CDANLoss(1.0, entropy_conditioning=False)(f, logits, is_t, disc).backward()
    g_rev = f.grad.clone()
    f.grad = None
    from tlestimators.losses import cdan_loss, conditional_features

    cdan_loss(disc(conditional_features(f, logits.softmax(1))), is_t).backward()
    assert g_rev.abs().sum() > 0
    torch.testing.assert_close(g_rev, -f.grad)


def test_information_maximization_prefers_confident_and_diverse():
    from tlestimators.losses import InformationMaximizationLoss, information_maximization_loss

    uniform = torch.zeros(2, 2)
    diverse = torch.tensor([[100.0, 0.0], [0.0, 100.0]])
    collapsed = torch.tensor([[100.0, 0.0], [100.0, 0.0]])
    assert information_maximization_loss(uniform).item() == pytest.approx(0.0, abs=1e-5)
    assert information_maximization_loss(diverse).item() == pytest.approx(-math.log(2), abs=1e-4)
    assert information_maximization_loss(collapsed).item() == pytest.approx(0.0, abs=1e-4)
    assert InformationMaximizationLoss(0.5)(diverse).item() == pytest.approx(-0.5 * math.log(2),
                                                                             abs=1e-4)


def test_pseudo_label_loss_hand_computed():
    from tlestimators.losses import pseudo_label_loss

    z = torch.tensor([[math.log(9.0), 0.0], [0.0, 0.0]], requires_grad=True)  # p = .9 / .5
    loss = pseudo_label_loss(z, threshold=0.85)
    assert loss.item() == pytest.approx(-math.log(0.9) / 2, rel=1e-5)
    loss.backward()
    assert z.grad[1].abs().sum() == 0  # below the threshold: no signal
    with pytest.raises(ValueError, match="threshold must be in"):
        pseudo_label_loss(z, 1.5)
