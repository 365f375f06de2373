"""Deep instruction tuning (DIT, Huang et al.): text tokens inside SAM's image encoder.

mode "layerwise" (L-DIT): before every block the text features are projected by that block's own
zero-initialised linear layer and joined in front of the image tokens.
mode "e2e" (E-DIT): the text is projected once (zero-initialised) before the first block; every later block
re-projects the previous block's text outputs, the paper's fix for frozen layers (identity-initialised; the
released code zero-initialises them, `reproject_init: zero`; models/segment_anything/modeling/image_encoder_e2e.py,
`probs`).
shared_text_projection: the released ViT-H code's parametrisation (image_encoder_layer_wise_vith.py, `prob_text`):
one Linear(text width -> encoder width, PyTorch's default init) applied to the text once, then each block's
zero-initialised Linear(encoder width -> encoder width); without it each block projects the text directly.
attention "global" (as published: every block attends over text + image, SAM's windows dropped, the
relative-position tables interpolated to the grid) or "windowed" (SAM's windows kept, text joined to each).
Text also reaches the decoder as sparse prompt tokens through a linear projection.
"""

from typing import Literal

import torch
from segment_anything.modeling import Sam
from torch import nn

from samadapt.errors import SamAdaptError
from samadapt.methods.base import Method
from samadapt.methods.dit.layers import TextTokenSource
from samadapt.methods.injection import BlockWrapper, wrap_encoder_blocks, wrapper_additions
from samadapt.text import TextEncoder, TextFeatures


class DeepInstructionTuning(Method):
    uses_text = True
    conditions_encoder = True

    def __init__(
        self,
        mode: Literal["layerwise", "e2e"] = "layerwise",
        attention: Literal["global", "windowed"] = "global",
        mask_padding: bool = True,
        max_tokens: int = 20,
        token_dropout: float = 0.1,
        decoder_tokens: bool = True,
        reproject_init: Literal["identity", "zero"] = "identity",
        shared_text_projection: bool = False,
    ) -> None:
        """
        Args:
            mode: "layerwise" (L-DIT) or "e2e" (E-DIT).
            attention: "global" (as published) or "windowed" (SAM's windows kept, text joined to each).
            mask_padding: mask padding text tokens in the encoder's attention (false: the released code).
            max_tokens: text tokens kept (the released code: 20).
            token_dropout: dropout on the projected text tokens (the released code: 0.1).
            decoder_tokens: the text also reaches the decoder as sparse prompt tokens (one Linear, as the code).
            reproject_init: E-DIT's per-block re-projections start as the identity, or at zero (the released code).
            shared_text_projection: one shared Linear(text -> encoder width) before the per-block projections, which
                are then width x width (the released ViT-H code); false: each block projects the text directly.
        """
        super().__init__()
        if mode not in ("layerwise", "e2e") or attention not in ("global", "windowed"):
            raise SamAdaptError(f"DIT: mode must be layerwise|e2e and attention global|windowed, "
                                f"got {mode!r}, {attention!r}")
        if reproject_init not in ("identity", "zero"):
            raise SamAdaptError(f"DIT: reproject_init must be identity or zero, got {reproject_init!r}")
        if max_tokens < 1:
            raise SamAdaptError(f"DIT: max_tokens must be >= 1, got {max_tokens}")
        self.mode, self.attention, self.mask_padding = mode, attention, mask_padding
        self.max_tokens, self.token_dropout, self.decoder_tokens = max_tokens, token_dropout, decoder_tokens
        self.reproject_init, self.shared_text_projection = reproject_init, shared_text_projection

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        text_dim, width = text_encoder.dim, sam.image_encoder.patch_embed.proj.out_channels
        # With the shared projection the blocks read the text already at the encoder's width (see encode).
        self.text_projection = nn.Linear(text_dim, width) if self.shared_text_projection else None
        block_text_dim = width if self.shared_text_projection else text_dim

        def wrap(i: int, block) -> BlockWrapper:
            fresh = self.mode == "layerwise" or i == 0
            source = TextTokenSource(
                "text" if fresh else "previous", block_text_dim if fresh else width, width,
                "zero" if fresh else self.reproject_init, self.token_dropout, self.mask_padding,
                always_join=self.attention == "global",
            )
            return BlockWrapper(block, self.context, extra_tokens=source, windowed=self.attention == "windowed")

        wrap_encoder_blocks(sam.image_encoder, wrap)
        self.to_decoder = nn.Linear(text_dim, sam.prompt_encoder.embed_dim) if self.decoder_tokens else None

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"method": self, "sam.mask_decoder": sam.mask_decoder, **wrapper_additions(sam)}

    def _truncate(self, text: TextFeatures) -> TextFeatures:
        n = self.max_tokens
        return TextFeatures(text.tokens[:, :n], text.mask[:, :n], text.pooled)

    def encode(self, sam: Sam, images: torch.Tensor, text: TextFeatures | None) -> torch.Tensor:
        if text is not None:
            text = self._truncate(text)
            if self.text_projection is not None:  # once per forward, shared by every block
                text = TextFeatures(self.text_projection(text.tokens), text.mask, text.pooled)
        return super().encode(sam, images, text)

    def prompt_embeddings(self, sam: Sam, sparse, dense, text: TextFeatures | None, image_embedding):
        if text is None or self.to_decoder is None:
            return sparse, dense
        tokens = self.to_decoder(text.tokens[:, : self.max_tokens]).to(sparse.dtype)
        return torch.cat([sparse, tokens], dim=1), dense
