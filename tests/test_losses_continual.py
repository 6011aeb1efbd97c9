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
