"""What every method is: trainable parts attached to a frozen SAM, through a few hooks.

A method
- builds its layers in `attach`, sized to the SAM and text encoder it is given, and may wrap SAM's
  submodules there (see `injection.py`: parallel branches, extra tokens in encoder blocks);
- may condition the image encoder on per-image inputs (text features) through `encode`;
- may add or transform the decoder's prompt embeddings in `prompt_embeddings`;
- declares exactly which modules train in `trainable_modules`; the LightningModule checks that nothing else does;
- may return extra training loss terms from `auxiliary_losses` (names in `auxiliary_loss_names`), which the
  LightningModule adds to the segmentation loss, each with its weight from `loss_weights` (default 1).
"""

import torch
from segment_anything.modeling import Sam
from torch import nn

from samadapt.sam.loop import encode_images
from samadapt.text import TextFeatures


class Method(nn.Module):
    uses_text: bool = False  # whether the method reads text features
    # Whether anything trainable or input-dependent runs inside the image encoder. When False the image
    # embedding depends on the image alone and may be computed once and reused.
    conditions_encoder: bool = False
    # Width of the text encoder's pooled vector (TextFeatures.pooled), set by SamAdaptModel before `attach`
    # for methods that read one sentence embedding rather than the tokens (`text_dim` is the token width).
    text_pooled_dim: int | None = None
    auxiliary_loss_names: tuple[str, ...] = ()  # the terms `auxiliary_losses` can return

    def __init__(self) -> None:
        super().__init__()
        # Per-forward inputs that wrapped blocks read (e.g. "text"). A plain dict, never saved.
        self.context: dict[str, object] = {}

    # False for pipelines evaluated as they are (e.g. clip_points): nothing to train is then no error.
    needs_training: bool = True

    def bind_text_encoder(self, encoder: nn.Module | None) -> None:
        """Called before `attach` with the model's frozen text encoder; methods that need more of it (CLIP's
        vision tower from the same weights) keep what they need. The encoder itself stays the model's."""

    def attach(self, sam: Sam, text_dim: int | None) -> None:
        """Create layers sized to this SAM and text encoder, wrap SAM's blocks if needed. Called once."""

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        """Modules whose parameters all train, by name relative to the LightningModule ("method", "sam.x")."""
        return {"method": self}

    def encode(self, sam: Sam, images: torch.Tensor, text: TextFeatures | None) -> torch.Tensor:
        """Image embeddings (B,C,h,w). Wrapped blocks find the text in `self.context` during the call."""
        self.context["text"] = text
        try:
            return encode_images(sam, images)
        finally:
            self.context.clear()

    def prompt_embeddings(
        self,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        text: TextFeatures | None,
        image_embedding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample's sparse (1,N,C) and dense (1,C,h,w) prompt embeddings, after the method's changes.

        `text` holds this sample's unpadded tokens (1,L,D) or is None when the batch has no text prompt.
        """
        return sparse, dense

    def auxiliary_losses(self, batch: dict, low_res_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra loss terms of the training forward that just ran on `batch` (its logits (B,1,h,w)); none by default."""
        return {}
