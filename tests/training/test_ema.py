"""EMA of the trainable weights: evaluation runs on it, training keeps its own weights, checkpoints carry it."""

import lightning as L
import pytest
import torch

from samadapt.errors import SamAdaptError
from samadapt.training.ema import EMA
from samadapt.training.module import SamAdaptModule
from tests.conftest import TEST_SIZE


def test_ema_tracks_swaps_and_restores():
    layer = torch.nn.Linear(2, 2)
    ema = EMA(layer, decay=0.5)
    with ema.applied():  # nothing to apply before the first update
        pass
    ema.update()  # starts the shadow at the current weights
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(2.0)
    ema.update()
    expected = start + 1.0  # halfway, with decay 0.5
    with ema.applied():
        assert torch.allclose(layer.weight, expected)
    assert torch.allclose(layer.weight, start + 2.0)  # training weights back
    with pytest.raises(SamAdaptError):
        EMA(layer, decay=1.0)


def test_module_evaluates_with_ema_and_checkpoints_it(tiny_sam_checkpoint, tmp_path):
    module = SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint,
                            image_size=TEST_SIZE, eval_prompts="none", ema_decay=0.9)
    weight = module.model.sam.mask_decoder.iou_token.weight
    module.ema.update()  # what optimizer_step does after every step
    with torch.no_grad():
        weight.add_(1.0)
    module.ema.update()
    trained = weight.detach().clone()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)
    assert torch.allclose(saved["ema"]["sam.mask_decoder.iou_token.weight"], trained - 0.9)
    assert torch.allclose(saved["state_dict"]["model.sam.mask_decoder.iou_token.weight"], trained)

    module._ema_scope.enter_context(module.ema.applied())  # what on_validation_epoch_start does
    assert torch.allclose(weight, trained - 0.9)
    module._ema_scope.close()  # what on_validation_epoch_end does
    assert torch.allclose(weight, trained)

    restored = SamAdaptModule.load_from_checkpoint(path)
    assert torch.allclose(restored.ema.shadow["sam.mask_decoder.iou_token.weight"], trained - 0.9)


def test_warmup_follows_the_released_dit_rule():
    """DIT's EMA: the shadow starts at the weights before training; update t uses min(decay, (t+1)/(t+10))."""
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = EMA(layer, decay=0.9997, warmup=True)
    shadow = 0.0
    for t in range(30):
        with torch.no_grad():
            layer.weight.fill_(float(t + 1))  # what the optimizer step did
        ema.update()
        decay = min(0.9997, (t + 1) / (t + 10))
        shadow = decay * shadow + (1 - decay) * (t + 1)
        assert ema.shadow["weight"].item() == pytest.approx(shadow, rel=1e-6)
    assert ema.updates == 30 and ema.current_decay() == pytest.approx(31 / 40)


def test_module_ema_warmup_starts_at_the_weights_and_its_update_count_survives_a_checkpoint(tiny_sam_checkpoint,
                                                                                          tmp_path):
    module = SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint,
                            image_size=TEST_SIZE, eval_prompts="none", ema_decay=0.9997, ema_warmup=True)
    weight = module.model.sam.mask_decoder.iou_token.weight
    before = weight.detach().clone()
    assert torch.equal(module.ema.shadow["sam.mask_decoder.iou_token.weight"], before)  # before any update
    for _ in range(3):
        with torch.no_grad():
            weight.add_(1.0)
        module.ema.update()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["ema_updates"] == 3
    restored = SamAdaptModule.load_from_checkpoint(path)
    assert restored.ema.warmup and restored.ema.updates == 3
    assert restored.ema.current_decay() == pytest.approx(4 / 13)  # the 4th update continues the sequence
    assert torch.equal(restored.ema.shadow["sam.mask_decoder.iou_token.weight"],
                       module.ema.shadow["sam.mask_decoder.iou_token.weight"])
    with pytest.raises(SamAdaptError, match="ema_decay"):
        SamAdaptModule(method="decoder_only", sam_variant="tiny", sam_checkpoint=tiny_sam_checkpoint,
                       image_size=TEST_SIZE, eval_prompts="none", ema_warmup=True)
