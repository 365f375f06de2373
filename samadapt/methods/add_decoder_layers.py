"""The "add N decoder layers" baseline (DIT, Table 1): shallow fusion with a deeper mask decoder.

Text tokens become extra sparse prompt tokens as in shallow fusion, and N more two-way attention blocks
(segment-anything's own class, freshly initialised, trainable) are appended to the decoder's transformer, so
they get more rounds of cross-attention with the image. `projection` chooses the text projection as in
shallow fusion ("linear": the released code's default_sam_add_2, one Linear).
"""

from typing import Literal

from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import TwoWayAttentionBlock
from torch import nn

from samadapt.errors import SamAdaptError
from samadapt.methods.base import Method
from samadapt.methods.layers import TextToPromptTokens
from samadapt.text import TextEncoder, TextFeatures


class AddDecoderLayers(Method):
    uses_text = True

    def __init__(self, num_layers: int = 2, text_tokens: Literal["tokens", "pooled"] = "tokens",
                 dropout: float = 0.1, projection: Literal["mlp", "linear"] = "mlp") -> None:
        """
        Args:
            num_layers: two-way attention blocks appended to the decoder.
            text_tokens, dropout, projection: the text projection, as in shallow_fusion.
        """
        super().__init__()
        if num_layers < 1:
            raise SamAdaptError(f"add_decoder_layers: num_layers must be >= 1, got {num_layers}")
        self.num_layers, self.text_tokens, self.dropout, self.projection = num_layers, text_tokens, dropout, projection

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        self.to_prompt = TextToPromptTokens(text_encoder, sam.prompt_encoder.embed_dim, self.text_tokens, self.dropout,
                                            self.projection)
        transformer = sam.mask_decoder.transformer
        first = transformer.layers[0]
        for _ in range(self.num_layers):
            transformer.layers.append(
                TwoWayAttentionBlock(
                    embedding_dim=transformer.embedding_dim,
                    num_heads=transformer.num_heads,
                    mlp_dim=first.mlp.lin1.out_features,
                    attention_downsample_rate=transformer.embedding_dim // first.cross_attn_token_to_image.internal_dim,
                    skip_first_layer_pe=False,
                ).to(first.norm1.weight.device)
            )
        transformer.depth += self.num_layers

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"method": self, "sam.mask_decoder": sam.mask_decoder}

    def prompt_embeddings(self, sam: Sam, sparse, dense, text: TextFeatures | None, image_embedding):
        return self.to_prompt.append(sparse, text), dense
