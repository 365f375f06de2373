"""Shallow fusion: text reaches SAM only in the mask decoder, as extra sparse prompt tokens.

This is SAM's own text path ("Default" in the DIT paper). `text_tokens="tokens"` projects every text token
(the strong variant); `"pooled"` projects one sentence embedding (MedSAM-style), kept for the ablation.
"""

from typing import Literal

import torch
from segment_anything.modeling import Sam
from torch import nn

from samadapt.methods.base import Method
from samadapt.methods.shallow_fusion.layers import TextToPromptTokens
from samadapt.text import TextFeatures


class ShallowFusion(Method):
    uses_text = True

    def __init__(self, text_tokens: Literal["tokens", "pooled"] = "tokens", dropout: float = 0.1) -> None:
        super().__init__()
        self.text_tokens = text_tokens
        self.dropout = dropout

    def attach(self, sam: Sam, text_dim: int | None) -> None:
        if text_dim is None:
            from samadapt.errors import SamAdaptError

            raise SamAdaptError("method ShallowFusion needs a text encoder; set model.text_encoder")
        self.to_prompt = TextToPromptTokens(text_dim, sam.prompt_encoder.embed_dim, dropout=self.dropout)

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"method": self, "sam.mask_decoder": sam.mask_decoder}

    def prompt_embeddings(self, sparse, dense, text: TextFeatures | None, image_embedding):
        if text is None:
            return sparse, dense
        features = text.tokens if self.text_tokens == "tokens" else text.pooled[:, None]
        tokens = self.to_prompt(features).to(sparse.dtype)
        return torch.cat([sparse, tokens], dim=1), dense
