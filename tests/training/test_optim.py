"""The released DIT code's optimizer settings: Adam's eps and the 'wcosine' schedule (warm-up from a start lr,
cosine down to a floor), stepped per optimizer step; bad combinations are clear errors."""

import math
from types import SimpleNamespace

import pytest
import torch

from samadapt.errors import SamAdaptError
from samadapt.training.optim import configure_optimization, warmup_then

LR, WARMUP_LR, MIN_LR = 1e-4, 1e-7, 1e-6  # DIT's yaml: LR, WARMUP_LR, MIN_LR


def wcosine(step: int, t: int, total: int) -> float:
    """utils/utils.py get_lr_scheduler, the 'wcosine' branch, as an absolute lr."""
    if step < t:
        return WARMUP_LR + step * (LR - WARMUP_LR) / t
    return MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(math.pi * (step - t) / (total - t)))


def settings(**changes):
    return {**dict(optimizer="adam", lr=LR, betas=(0.9, 0.98), weight_decay=0.0, scheduler="cosine",
                   warmup_steps=0, warmup_epochs=3, lr_scaling="none", lr_reference_batch=None), **changes}


def test_warmup_from_a_start_lr_then_cosine_to_min_lr_follows_the_released_code():
    trainer = SimpleNamespace(estimated_stepping_batches=400, max_epochs=40)  # 10 steps an epoch, 3 to warm up
    param = torch.nn.Parameter(torch.zeros(1))
    configured = configure_optimization([param], trainer, **settings(eps=1e-9, warmup_start_lr=WARMUP_LR,
                                                                     min_lr=MIN_LR))
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert optimizer.defaults["eps"] == 1e-9 and optimizer.defaults["betas"] == (0.9, 0.98)
    seen = []
    for _ in range(401):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert seen == pytest.approx([wcosine(step, 30, 400) for step in range(400)] + [MIN_LR], rel=1e-9)
    assert seen[0] == pytest.approx(WARMUP_LR) and seen[30] == pytest.approx(LR) and seen[400] == pytest.approx(MIN_LR)


def test_defaults_keep_the_plain_schedule_exactly():
    plain = warmup_then("cosine", warmup=10, total=110)
    same = warmup_then("cosine", warmup=10, total=110, lr=LR, warmup_start_lr=None, min_lr=0.0)
    assert [plain(s) for s in range(120)] == [same(s) for s in range(120)]  # bit for bit
    assert plain(0) == 0.1 and plain(110) == 0.0
    built = configure_optimization([torch.nn.Parameter(torch.zeros(1))], None,
                                   **settings(scheduler="none", warmup_epochs=0))
    assert built.defaults["eps"] == 1e-8


@pytest.mark.parametrize("changes, message", [
    ({"scheduler": "none", "min_lr": MIN_LR}, "min_lr"),
    ({"warmup_epochs": 0, "warmup_start_lr": WARMUP_LR}, "warmup_start_lr"),
    ({"min_lr": 2 * LR}, "between 0 and lr"),
])
def test_schedule_options_that_would_be_ignored_are_errors(changes, message):
    trainer = SimpleNamespace(estimated_stepping_batches=400, max_epochs=40)
    with pytest.raises(SamAdaptError, match=message):
        configure_optimization([torch.nn.Parameter(torch.zeros(1))], trainer, **settings(**changes))
