"""Full fine-tuning of every SAM part (and the way the demo pretrains its tiny stand-in SAM)."""

from segment_anything.modeling import Sam
from torch import nn

from samadapt.methods.base import Method


class FullFinetune(Method):
    conditions_encoder = True  # the encoder trains, so its embeddings change every step

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"sam": sam}
