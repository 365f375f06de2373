"""`make bench` helpers: every registered method is measured, goals are judged right, FLOPs include attention."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from samadapt.commands.bench import encoder_flops, goal, method_variants
from samadapt.methods import METHODS
from samadapt.sam import build_sam
from samadapt.sam.loop import encode_images


def test_every_registered_method_is_benchmarked():
    measured = {name for name, _ in method_variants().values()}
    assert measured == set(METHODS)
    assert "dit_windowed" in method_variants()  # the layout issue 9 sets a goal for


def test_goal_direction():
    assert goal(1.3, 1.25, at_least=True)["met"] and not goal(1.2, 1.25, at_least=True)["met"]
    assert goal(1.04, 1.05, at_least=False)["met"] and not goal(1.06, 1.05, at_least=False)["met"]
    assert goal(None, 1.05, at_least=False)["met"] is None


def test_encoder_flops_count_the_fused_attention_kernel():
    """torch's counter misses SDPA on the CPU; the bench adds QK^T and PV: 4 * tokens^2 * width per block."""
    torch.set_num_threads(1)
    fused = build_sam("tiny", None, image_size=64, fused_attention=True)
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encode_images(fused, images)
    enc = fused.image_encoder
    tokens, width = (64 // 8) ** 2, enc.patch_embed.proj.out_channels  # at 64 px one 8x8 window is the grid
    assert encoder_flops(fused, 64) - counter.get_total_flops() == len(enc.blocks) * 4 * tokens**2 * width
