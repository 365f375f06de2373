"""Point Matching Module: refine boundary points of the decoder's mask toward the ground-truth contour.

Each point of the predicted boundary becomes a token built from features sampled where it lies (the mask
decoder's upscaled embedding, the image embedding, the mask logit) and its position; a transformer encoder
relates the points of one contour, a decoder (position queries over the encoded points) predicts each
point's offset. The point-distance loss is an auxiliary training task: its gradient reaches the prompt
learning module through the frozen decoder's features, and the refined points are not used at inference.
"""

import torch
import torch.nn.functional as F
from torch import nn


def sample_at(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """features (B,C,H,W), points (B,K,2) xy in [0,1] of the frame -> (B,K,C), bilinear."""
    grid = points[:, :, None, :] * 2.0 - 1.0
    return F.grid_sample(features, grid, mode="bilinear", align_corners=False)[..., 0].transpose(1, 2)


class PointMatchingModule(nn.Module):
    def __init__(self, image_dim: int, upscaled_dim: int, dim: int = 128, num_heads: int = 4, mlp_dim: int = 512,
                 encoder_layers: int = 3, decoder_layers: int = 2) -> None:
        super().__init__()
        self.point_in = nn.Linear(upscaled_dim + image_dim + 1, dim)
        self.position_in = nn.Linear(image_dim, dim)
        layer = dict(d_model=dim, nhead=num_heads, dim_feedforward=mlp_dim, dropout=0.0, batch_first=True,
                     norm_first=True)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), encoder_layers,
                                             norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), decoder_layers,
                                             norm=nn.LayerNorm(dim))
        self.offset = nn.Linear(dim, 2)
        nn.init.zeros_(self.offset.weight)  # refined points start on the predicted ones
        nn.init.zeros_(self.offset.bias)

    def forward(self, points: torch.Tensor, position: torch.Tensor, upscaled: torch.Tensor, image: torch.Tensor,
                logits: torch.Tensor) -> torch.Tensor:
        """points (B,K,2) in [0,1]; position (B,K,C) their positional encoding; upscaled (B,c,4h,4w),
        image (B,C,h,w) and logits (B,1,4h,4w) sampled at the points -> refined points (B,K,2)."""
        features = torch.cat([sample_at(upscaled, points), sample_at(image, points), sample_at(logits, points)], -1)
        queries = self.position_in(position)
        memory = self.encoder(self.point_in(features) + queries)
        return points + self.offset(self.decoder(queries, memory))
