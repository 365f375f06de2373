"""Decoder-only fine-tuning: SAM's mask decoder trains, nothing else, and no text is read (text-blind baseline)."""

from segment_anything.modeling import Sam
from torch import nn

from samadapt.methods.base import Method


class DecoderOnly(Method):
    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"sam.mask_decoder": sam.mask_decoder}
