"""EWC penalty and distillation loss as pure tensor functions."""

import pytest
import torch

from tlestimators.losses import DistillationLoss, EWCPenalty, distillation_loss, ewc_penalty


def test_ewc_penalty_value_and_grown_parameters():
    p = torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]], requires_grad=True)  # grew a row
    anchor = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    fisher = torch.tensor([[0.0, 2.0], [1.0, 0.5]])
    pen = ewc_penalty([p], [anchor], [fisher])
    # 0.5 * (0*0 + 2*1 + 1*4 + 0.5*9) = 5.25; the new row is free
    assert pen.item() == pytest.approx(5.25)
    pen.backward()
    assert torch.equal(p.grad[2], torch.zeros(2))
    assert p.grad[0, 1].item() == pytest.approx(2.0)  # F * (theta - theta*)
    assert EWCPenalty([anchor], [fisher])([p]).item() == pytest.approx(5.25)
    with pytest.raises(ValueError, match="may only grow"):
        ewc_penalty([torch.zeros(1, 2)], [anchor], [fisher])


def test_distillation_is_zero_for_the_teacher_and_only_touches_old_outputs():
    torch.manual_seed(0)
    teacher = torch.randn(8, 3)
    student = torch.cat([teacher.clone(), torch.randn(8, 2)], dim=1).requires_grad_(True)
    assert distillation_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(8, 5, requires_grad=True)
    loss = DistillationLoss(temperature=2.0)(other, teacher)
    assert loss.item() > 0
    loss.backward()
    assert torch.equal(other.grad[:, 3:], torch.zeros(8, 2))
    assert other.grad[:, :3].abs().sum() > 0
    with pytest.raises(ValueError, match="fewer than the teacher"):
        distillation_loss(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation_loss(other, teacher, temperature=0)


def test_distillation_matches_the_hand_computed_kl():
    import math

    teacher = torch.tensor([[0.0, 0.0]])
    student = torch.tensor([[math.log(3.0), 0.0, 5.0]])  # the third output is a new class
    # T=1: p_t = (1/2, 1/2), p_s = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
    assert distillation_loss(student, teacher, 1.0).item() == pytest.approx(
        0.5 * math.log(4 / 3), rel=1e-6)
    # T=2: p_s = (r, 1) / (1 + r) with r = sqrt(3); the T**2 = 4 factor keeps the scale
    r = math.sqrt(3.0)
    kl = 0.5 * math.log(0.5 * (1 + r) / r) + 0.5 * math.log(0.5 * (1 + r))
    assert distillation_loss(student, teacher, 2.0).item() == pytest.approx(4 * kl, rel=1e-6)


def test_er_ace_loss_masks_old_outputs_only_for_current_class_rows():
    import math

    from tlestimators.losses import ERACELoss, er_ace_loss

    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, math.log(2.0)]], requires_grad=True)
    target = torch.tensor([1, 0])
    current = torch.tensor([False, True, True])  # this experience brings classes 1 and 2
    # row 0 (class 1, current): softmax over outputs {1, 2} = (1/2, 1/2) -> ln 2
    # row 1 (class 0, replayed): softmax over all = (1, 1, 2) / 4 -> ln 4
    loss = er_ace_loss(logits, target, current)
    assert loss.item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    loss.backward()
    assert logits.grad[0, 0].item() == 0.0  # the old class's logit is not pushed down
    assert logits.grad[1, 0].item() == pytest.approx(-0.75 / 2)  # (p0 - 1) / N
    w = torch.tensor([1.0, 2.0, 3.0])  # weighted mean: (2 ln 2 + 1 ln 4) / (2 + 1)
    assert ERACELoss(current, w)(logits, target).item() == pytest.approx(
        4 * math.log(2.0) / 3, rel=1e-6)
    # no current classes among the labels: plain cross-entropy
    plain = torch.nn.functional.cross_entropy(logits, target)
    assert er_ace_loss(logits, target, torch.tensor([False, False, True])).item() == (
        pytest.approx(plain.item()))
    with pytest.raises(ValueError, match="mask of C outputs"):
        er_ace_loss(logits, target, torch.tensor([True, False]))


class _Branchy(torch.nn.Module):
    """A linear layer behind data-dependent control flow, which vmap cannot trace."""

    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x):
        if float(x.sum()) > -1e9:
            return self.lin(x)
        return -self.lin(x)  # pragma: no cover


def test_empirical_fisher_is_the_mean_squared_per_example_gradient():
    from tlestimators.losses import empirical_fisher

    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
    x = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    y = torch.tensor([0, 1])
    # zero weights: p = (1/2, 1/2); dCE/dW = (p - onehot(y)) x^T, dCE/db = p - onehot(y)
    # example 1: [[-.5, -1], [.5, 1]] -> squared [[.25, 1], [.25, 1]]
    # example 2: [[1, 0], [-1, 0]]    -> squared [[1, 0], [1, 0]]
    want_w = torch.tensor([[0.625, 0.5], [0.625, 0.5]])
    want_b = torch.tensor([0.25, 0.25])
    for module, batches in [(lin, [(x, y)]), (lin, [(x[:1], y[:1]), (x[1:], y[1:])]),
                            (_Branchy(lin), [(x, y)])]:
        module.train()
        f = empirical_fisher(module, batches)
        prefix = "lin." if isinstance(module, _Branchy) else ""
        assert torch.allclose(f[prefix + "weight"], want_w)
        assert torch.allclose(f[prefix + "bias"], want_b)
        assert module.training and lin.weight.grad is None
    # the squared mean gradient (what the per-example form avoids) is much smaller here
    mean_grad_b = torch.tensor([0.0, 0.0])  # (-.5 + .5) / 2 per output
    assert not torch.allclose(mean_grad_b**2, want_b)


def test_empirical_fisher_of_some_parameters_only():
    from tlestimators.losses import empirical_fisher

    lin = torch.nn.Linear(2, 2)
    f = empirical_fisher(lin, [(torch.ones(3, 2), torch.tensor([0, 1, 1]))],
                         params={"bias": lin.bias})
    assert list(f) == ["bias"]


def test_accumulate_fisher_adds_the_old_block_of_grown_parameters():
    from tlestimators.losses import accumulate_fisher

    old = {"w": torch.tensor([[1.0, 1.0]]), "gone": torch.ones(1)}
    new = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5])}
    out = accumulate_fisher(old, new)
    assert torch.equal(out["w"], torch.tensor([[2.0, 3.0], [3.0, 4.0]]))
    assert torch.equal(out["b"], torch.tensor([0.5])) and set(out) == {"w", "b"}
    assert torch.equal(new["w"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # not modified
