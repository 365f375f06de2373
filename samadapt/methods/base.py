"""What every method is: trainable parts attached to a frozen SAM, through a few hooks.

A method
- builds its layers in `attach`, sized to the SAM and text encoder it is given, and may wrap SAM's
  submodules there (see `injection.py`: parallel branches, extra tokens in encoder blocks);
- may condition the image encoder on per-image inputs (text features) through `encode`;
- may add or transform the decoder's prompt embeddings in `prompt_embeddings`;
- declares exactly which modules train in `trainable_modules`; the LightningModule checks that nothing else does;
- may return extra training loss terms from `auxiliary_losses` (names in `auxiliary_loss_names`), which the
  LightningModule adds to the segmentation loss, each with its weight from `loss_weights` (default 1).

SAM belongs to the model: every hook receives it as an argument and no method keeps a reference to it.
What one forward shares between the method and its layers inside SAM lives in `self.context`, a
`ForwardContext` that `forward_context` empties when the model's forward ends.
"""

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from segment_anything.modeling import Sam
from torch import nn

from samadapt.sam.loop import encode_images
from samadapt.text import TextEncoder, TextFeatures


@dataclass
class ForwardContext:
    """Inputs and records of one model forward, shared by a method and the layers it put inside SAM; never saved."""

    image_keys: list | None = None  # the batch's image keys: which images may reuse per-image features (CLIP's)
    text: TextFeatures | None = None  # the batch's text as the image encoder sees it (wrapped blocks read it)
    clip: dict[str, torch.Tensor] | None = None  # CLIP features of the batch's images (clip_guided's adapters)
    extra_out: torch.Tensor | None = None  # the last wrapped block's extra-token outputs (E-DIT's next block)
    # prompts the method places itself, (points, labels) or None per sample, taken in decode order (clip_points)
    points: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    recorded: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # per decoded sample, for auxiliary losses

    def clear(self) -> None:
        """Back to empty: the forward's tensors are let go."""
        vars(self).update(vars(ForwardContext()))

    @contextmanager
    def as_it_was(self, earlier: "ForwardContext") -> Iterator[None]:
        """Hold `earlier`'s values inside the block (activation checkpointing recomputes a block in backward,
        when the forward has moved on), this context's own afterwards."""
        now = copy.copy(self)
        vars(self).update(vars(earlier))
        try:
            yield
        finally:
            vars(self).update(vars(now))


class Method(nn.Module):
    uses_text: bool = False  # whether the method reads text features
    # Whether anything trainable or input-dependent runs inside the image encoder. When False the image
    # embedding depends on the image alone and may be computed once and reused.
    conditions_encoder: bool = False
    # False for pipelines evaluated as they are (e.g. clip_points): nothing to train is then no error.
    needs_training: bool = True
    auxiliary_loss_names: tuple[str, ...] = ()  # the terms `auxiliary_losses` can return

    def __init__(self) -> None:
        super().__init__()
        self.context = ForwardContext()  # a plain object, shared with the wrapped blocks (never a submodule)

    @contextmanager
    def forward_context(self, image_keys: list | None = None) -> Iterator[ForwardContext]:
        """The context of one model forward: it starts empty (with the batch's image keys) and is emptied at the
        end, so nothing of one forward reaches the next. Hooks called outside it (the predictor's encode, then
        decode_prompts) share the context until the next forward."""
        self.context.clear()
        self.context.image_keys = image_keys
        try:
            yield self.context
        finally:
            self.context.clear()

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        """Create layers sized to this SAM and text encoder, wrap SAM's blocks if needed. Called once.

        `text_encoder` is the model's frozen encoder (given whenever `uses_text`); a method reads its widths
        (`dim` of the tokens, `pooled_dim` of the sentence vector) or builds what it needs from it (CLIP's vision
        tower from the same weights), and keeps no reference to it.
        """

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        """Modules whose parameters all train, by name relative to the LightningModule ("method", "sam.x")."""
        return {"method": self}

    def encode(self, sam: Sam, images: torch.Tensor, text: TextFeatures | None) -> torch.Tensor:
        """Image embeddings (B,C,h,w). Wrapped blocks find the text in `self.context` during the call."""
        self.context.text = text
        return encode_images(sam, images)

    def prompt_embeddings(
        self,
        sam: Sam,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        text: TextFeatures | None,
        image_embedding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample's sparse (1,N,C) and dense (1,C,h,w) prompt embeddings, after the method's changes.

        `text` holds this sample's unpadded tokens (1,L,D) or is None when the batch has no text prompt.
        """
        return sparse, dense

    def auxiliary_losses(self, sam: Sam, batch: dict, low_res_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra loss terms of the training forward running on `batch` (its logits (B,1,h,w)); none by default."""
        return {}
