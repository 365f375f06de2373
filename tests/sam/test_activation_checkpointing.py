"""Activation checkpointing per encoder block: the same loss and gradients, fewer saved activations."""

import pytest
import torch

from samadapt.training.module import SamAdaptModule
from tests.sam.test_fused_attention import method_batch

CASES = {  # methods whose gradients go through the encoder blocks: wrapped (DIT, both modes) or plain (full)
    "ldit_windowed": ("dit", {"attention": "windowed"}, {}),
    "edit_global": ("dit", {"mode": "e2e"}, {}),
    "full_unfused": ("full", {}, {"train_image_encoder": True, "fused_attention": False}),
}


def make(case, checkpointing, checkpoint, bert):
    method, options, extra = CASES[case]
    torch.manual_seed(0)
    return SamAdaptModule(method=method, method_options=options, sam_variant="tiny", sam_checkpoint=checkpoint,
                          image_size=96, text_encoder="bert", text_options={"name_or_path": bert},
                          activation_checkpointing=checkpointing, **extra)


def loss_and_saved(module, batch):
    """Loss, trainable gradients, and how many values autograd kept for backward outside checkpoints."""
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    torch.manual_seed(3)  # the same dropout masks in both runs (checkpoint replays the RNG in recomputation)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = module.step_loss(batch, [frozenset({"text"})] * 2)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in module.named_parameters() if p.requires_grad}, sum(saved)


@pytest.mark.parametrize("mode", ["full", "selective"])
@pytest.mark.parametrize("case", list(CASES))
def test_checkpointing_gives_the_same_gradients(case, mode, tiny_sam_checkpoint, tiny_bert):
    plain, checkpointed = (make(case, flag, tiny_sam_checkpoint, tiny_bert) for flag in (False, mode))
    with torch.no_grad():  # non-zero text projections, so the text really flows through every block
        for p in plain.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    checkpointed.load_state_dict(plain.state_dict())  # same names with and without checkpointing
    plain.train()
    checkpointed.train()
    batch = method_batch()
    loss_plain, grads_plain, saved_plain = loss_and_saved(plain, batch)
    loss_ckpt, grads_ckpt, saved_ckpt = loss_and_saved(checkpointed, batch)
    assert torch.allclose(loss_ckpt, loss_plain, atol=1e-6)
    assert grads_plain.keys() == grads_ckpt.keys()
    assert all(grads_plain[n] is not None for n in grads_plain if ".image_encoder.blocks." in n)
    for name, grad in grads_plain.items():
        if grad is None:  # e.g. prompt-encoder weights no prompt used
            assert grads_ckpt[name] is None, name
            continue
        assert torch.allclose(grads_ckpt[name], grad, atol=1e-6, rtol=1e-5), name
    assert saved_ckpt < 0.5 * saved_plain  # the blocks' activations are recomputed, not kept
    # the wrapped blocks keep their attributes and the encoder works without gradients (evaluation)
    assert checkpointed.model.sam.image_encoder.blocks[0].__class__ is plain.model.sam.image_encoder.blocks[0].__class__
    with torch.no_grad():
        checkpointed.eval().model(batch, [frozenset({"text"})] * 2)
