"""The training loop's pieces: TrainStep (accumulation, clipping, schedule), model_accuracy, step_memory_bytes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from motionformer.engine.memory import step_memory_bytes
from motionformer.engine.metrics import model_accuracy
from motionformer.engine.optim import build_scheduler
from motionformer.engine.step import TrainStep

CPU = torch.device("cpu")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _sgd_step(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], **options) -> float:
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.5), device=CPU, accumulation=len(batches),
                     **options)
    for index, (x, y) in enumerate(batches):
        with step.micro_batch(sync=index == len(batches) - 1):
            with step.autocast():
                loss = F.cross_entropy(model(x), y)
            step.backward(loss)
    norm = step.step()
    return float("nan") if norm is None else float(norm)


def test_two_accumulated_halves_make_the_step_of_the_whole_batch():
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(3, (8,))
    whole, halves = _model(), _model()
    _sgd_step(whole, [(x, y)])
    _sgd_step(halves, [(x[:4], y[:4]), (x[4:], y[4:])])
    for a, b in zip(whole.parameters(), halves.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert all(p.grad is None for p in halves.parameters())


def test_clipping_bounds_the_update_and_returns_the_norm_before_it():
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randint(3, (8,))
    model = _model()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expected = torch.cat([g.flatten() for g in grads]).norm()
    norm = _sgd_step(model, [(x, y)], clip_grad=1e-3)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert norm == pytest.approx(float(expected))
    assert float((after - before).norm()) == pytest.approx(0.5 * 1e-3, rel=1e-4)  # lr x the clipped norm


def test_the_schedule_steps_with_the_optimizer():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    step = TrainStep(model, optimizer, build_scheduler(optimizer, total_steps=4, warmup_steps=2, schedule="linear"),
                     device=CPU)
    rates = []
    for _ in range(3):
        rates.append(step.lr)
        step.backward(model(torch.randn(2, 6, dtype=torch.float64)).sum())
        step.step()
    assert rates == pytest.approx([0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="accumulation must be at least 1, got 0"):
        TrainStep(model, optimizer, device=CPU, accumulation=0)


def test_model_accuracy_counts_top1_in_batches_and_restores_the_mode():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # predicts the larger coordinate
    inputs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1, 0])  # the third is wrong
    model.train()
    assert model_accuracy(model, inputs, labels, batch_size=2) == pytest.approx(0.8)
    assert model.training
    flipped = model_accuracy(model, inputs, labels, batch_size=3, prepare=lambda batch: batch.flip(1))
    assert flipped == pytest.approx(0.2)


def test_step_memory_grows_with_the_batch_and_leaves_no_gradients():
    model = _model()
    sizes = [step_memory_bytes(model, lambda n=n: F.cross_entropy(model(torch.randn(n, 6, dtype=torch.float64)),
                                                                  torch.zeros(n, dtype=torch.long)), CPU)
             for n in (4, 64)]
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    assert 4 * parameters < sizes[0] < sizes[1]
    assert all(p.grad is None for p in model.parameters())
