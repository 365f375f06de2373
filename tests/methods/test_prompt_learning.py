"""Prompt learning (PLM + PMM) on a fully frozen SAM: step 0 is frozen SAM, only the modules train, PMM's loss."""

import numpy as np
import pytest
import torch

from data_modules import RefCocoDataModule
from samadapt.errors import SamAdaptError
from samadapt.methods.base import ForwardContext
from samadapt.methods.prompt_learning.boundary import boundary_points, match_cyclic, resample_closed
from samadapt.methods.prompt_learning.plm import PromptLearningModule
from samadapt.methods.prompt_learning.pmm import PointMatchingModule
from samadapt.training.module import SamAdaptModule
from tests.conftest import TEST_SIZE

POINTS = [frozenset({"points"})] * 4


def module(checkpoint, method="plm", **kw):
    torch.manual_seed(0)
    return SamAdaptModule(method=method, sam_variant="tiny", sam_checkpoint=checkpoint, image_size=TEST_SIZE,
                          eval_prompts="points", **kw)


@pytest.fixture(scope="module")
def batch(shapes_root):
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, batch_size=4, num_points=2)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("pmm", [False, True])
def test_step_zero_is_frozen_sam_exactly(tiny_sam_checkpoint, batch, pmm):
    frozen = module(tiny_sam_checkpoint, "decoder_only")  # same frozen SAM, prompts untouched
    plm = module(tiny_sam_checkpoint, method_options={"pmm": pmm})
    for m in (frozen, plm):
        m.train()
    with torch.no_grad():
        expected, expected_iou = frozen.model(batch, POINTS)
        logits, iou = plm.model(batch, POINTS)
    assert torch.equal(logits, expected) and torch.equal(iou, expected_iou)


def test_only_the_prompt_modules_train(tiny_sam_checkpoint, batch):
    m = module(tiny_sam_checkpoint, method_options={"pmm": True}, loss_weights={"focal": 20, "dice": 1, "iou": 1})
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.method.plm.", "model.method.pmm.")) for n in trainable)
    sam_before = {k: v.clone() for k, v in m.model.sam.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    with torch.no_grad():
        start, _ = m.model(batch, POINTS)
    m.train()
    for _ in range(3):
        loss, parts = m.step_loss(batch, POINTS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(parts) == {"focal", "dice", "iou", "pmm"} and torch.isfinite(loss)
    with torch.no_grad():
        after, _ = m.model(batch, POINTS)
    assert not torch.equal(start, after)  # the prompts moved
    for k, v in m.model.sam.state_dict().items():
        assert torch.equal(v, sam_before[k]), k


def test_pmm_loss_reaches_the_prompt_module(tiny_sam_checkpoint, batch):
    """After PMM's zero-initialised head has moved once, the point loss alone sends gradient into the PLM."""
    m = module(tiny_sam_checkpoint, method_options={"pmm": True})
    m.train()
    method = m.model.method
    optimizer = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        _, _, aux = m.model(batch, POINTS, auxiliary_losses=True)
        optimizer.zero_grad()
        aux["pmm"].backward()
        optimizer.step()
    assert method.pmm.offset.weight.grad.abs().sum() > 0
    assert method.plm.out.weight.grad.abs().sum() > 0
    assert method.context == ForwardContext()  # the forward's records are let go when it ends
    m.eval()
    assert m.model(batch, POINTS, auxiliary_losses=True)[2] == {}  # evaluation records nothing


def test_auxiliary_weight_and_unknown_terms(tiny_sam_checkpoint):
    m = module(tiny_sam_checkpoint, method_options={"pmm": True}, loss_weights={"bce": 1, "pmm": 0.5})
    assert m.auxiliary_weights == {"pmm": 0.5}
    with pytest.raises(SamAdaptError, match="pmm"):
        module(tiny_sam_checkpoint, loss_weights={"bce": 1, "pmm": 0.5})  # PLM without PMM has no such term


def test_parameter_counts_match_the_paper_at_vit_b():
    """PLM 1.6M and PMM 1.2M in the paper; ViT-B prompts are 256 wide, its upscaled embedding 32."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(PromptLearningModule(256)) - 1.6e6) < 0.05e6
    assert abs(count(PointMatchingModule(256, 32)) - 1.2e6) < 0.05e6


def test_boundary_points_are_even_and_matching_undoes_shift_and_direction():
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=float)
    points = resample_closed(square, 8)
    steps = np.linalg.norm(np.diff(np.concatenate([points, points[:1]]), axis=0), axis=1)
    assert np.allclose(steps, 2.0)
    yy, xx = np.mgrid[:64, :64]
    disc = (xx - 31.5) ** 2 + (yy - 31.5) ** 2 < 20**2
    ring = boundary_points(disc, 32)
    radius = np.linalg.norm(ring * 64 - 32, axis=1)
    assert ring.shape == (32, 2) and np.all(np.abs(radius - 20) < 1.5)
    assert boundary_points(np.zeros((8, 8), bool), 4) is None
    target = torch.from_numpy(ring)
    scrambled = target.roll(5, 0).flip(0)
    assert torch.equal(match_cyclic(target, scrambled), target)
