"""Deep instruction tuning (DIT, Huang et al.): text tokens inside SAM's image encoder.

mode "layerwise" (L-DIT): before every block the text features are projected by that block's own
zero-initialised linear layer and joined in front of the image tokens.
mode "e2e" (E-DIT): the text is projected once (zero-initialised) before the first block; every later block
re-projects the previous block's text outputs (identity-initialised), the paper's fix for frozen layers.
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
    ) -> None:
        super().__init__()
        if mode not in ("layerwise", "e2e") or attention not in ("global", "windowed"):
            raise SamAdaptError(f"DIT: mode must be layerwise|e2e and attention global|windowed, "
                                f"got {mode!r}, {attention!r}")
        if max_tokens < 1:
            raise SamAdaptError(f"DIT: max_tokens must be >= 1, got {max_tokens}")
        self.mode, self.attention, self.mask_padding = mode, attention, mask_padding
        self.max_tokens, self.token_dropout, self.decoder_tokens = max_tokens, token_dropout, decoder_tokens

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        text_dim, width = text_encoder.dim, sam.image_encoder.patch_embed.proj.out_channels

        def wrap(i: int, block) -> BlockWrapper:
            fresh = self.mode == "layerwise" or i == 0
            source = TextTokenSource(
                "text" if fresh else "previous", text_dim if fresh else width, width,
                "zero" if fresh else "identity", self.token_dropout, self.mask_padding,
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
        return super().encode(sam, images, None if text is None else self._truncate(text))

    def prompt_embeddings(self, sam: Sam, sparse, dense, text: TextFeatures | None, image_embedding):
        if text is None or self.to_decoder is None:
            return sparse, dense
        tokens = self.to_decoder(text.tokens[:, : self.max_tokens]).to(sparse.dtype)
        return torch.cat([sparse, tokens], dim=1), dense
