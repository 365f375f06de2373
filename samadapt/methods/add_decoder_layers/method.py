"""The "add N decoder layers" baseline (DIT, Table 1): shallow fusion with a deeper mask decoder.

N more two-way attention blocks (segment-anything's own class, freshly initialised, trainable) are appended
to the decoder's transformer, so text tokens get more rounds of cross-attention with the image.
"""

from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import TwoWayAttentionBlock

from samadapt.errors import SamAdaptError
from samadapt.methods.shallow_fusion import ShallowFusion


class AddDecoderLayers(ShallowFusion):
    def __init__(self, num_layers: int = 2, text_tokens: str = "tokens", dropout: float = 0.1) -> None:
        super().__init__(text_tokens=text_tokens, dropout=dropout)
        if num_layers < 1:
            raise SamAdaptError(f"add_decoder_layers: num_layers must be >= 1, got {num_layers}")
        self.num_layers = num_layers

    def attach(self, sam: Sam, text_dim: int | None) -> None:
        super().attach(sam, text_dim)
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
