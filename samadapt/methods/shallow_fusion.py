"""Shallow fusion: text reaches SAM only in the mask decoder, as extra sparse prompt tokens.

This is SAM's own text path ("Default" in the DIT paper). `text_tokens="tokens"` projects every text token
(the strong variant); `"pooled"` projects one sentence embedding (MedSAM-style), kept for the ablation.
`projection="mlp"` projects through a 2-layer MLP; `"linear"` through one Linear, as the released DIT code's
"Default" (models/default_sam/net.py, `text_proj`, no dropout: use it with dropout 0).
"""

from typing import Literal

from segment_anything.modeling import Sam
from torch import nn

from samadapt.methods.base import Method
from samadapt.methods.layers import TextToPromptTokens
from samadapt.text import TextEncoder, TextFeatures


class ShallowFusion(Method):
    uses_text = True

    def __init__(self, text_tokens: Literal["tokens", "pooled"] = "tokens", dropout: float = 0.1,
                 projection: Literal["mlp", "linear"] = "mlp") -> None:
        """
        Args:
            text_tokens: every text token becomes a prompt token ("tokens") or the pooled sentence vector does.
            dropout: inside the MLP, or after the linear projection.
            projection: "mlp" (Linear, GELU, dropout, Linear) or "linear" (one Linear: DIT's "Default").
        """
        super().__init__()
        self.text_tokens, self.dropout, self.projection = text_tokens, dropout, projection

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        self.to_prompt = TextToPromptTokens(text_encoder, sam.prompt_encoder.embed_dim, self.text_tokens, self.dropout,
                                            self.projection)

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"method": self, "sam.mask_decoder": sam.mask_decoder}

    def prompt_embeddings(self, sam: Sam, sparse, dense, text: TextFeatures | None, image_embedding):
        return self.to_prompt.append(sparse, text), dense
