"""CLIP's frozen vision tower through `open_clip`: dense patch features in the joint image-text space.

Every patch token of the last block goes through the tower's own `ln_post` and projection, the path the
pooled image embedding takes, so a patch feature and a text embedding (CLIPTextEncoder's `pooled`) can be
compared by cosine similarity. Images arrive as samadapt's model input (letterboxed 0..255 RGB at SAM's size)
and are resized to the tower's fixed input size and normalised the CLIP way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samadapt.embedding_cache import EmbeddingCache
from samadapt.errors import SamAdaptError

# open_clip's OPENAI_DATASET_MEAN / STD (every official open_clip ViT uses them), in 0..255 units
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)


class CLIPVisionEncoder(nn.Module):
    """The frozen vision tower of an open_clip CLIP, returning (B, gh, gw, E) patch embeddings.

    Built from a CLIPTextEncoder's spec (same weights file), so text and patches share one joint space.
    Features of images with a key (`image_key` from the data: image, size, flip) are kept in an LRU cache of
    at most `cache_mb` MB; keyless images (random pixels) are always encoded.
    """

    def __init__(self, model_name: str, pretrained: str | None, model_cfg: dict | None, cache_mb: float = 256.0):
        super().__init__()
        from samadapt.text.clip import load_open_clip

        model, _ = load_open_clip(model_name, pretrained, model_cfg)
        visual = model.visual
        if getattr(visual, "attn_pool", None) is not None or not hasattr(visual, "ln_post"):
            raise SamAdaptError(f"{model_name}: only plain open_clip ViT vision towers (no attentional pooling, "
                                "no timm trunk) give patch features here")
        if visual.proj is None:
            raise SamAdaptError(f"{model_name}: the vision tower has no projection to the joint space")
        self.visual = visual
        self.input_size = tuple(visual.image_size) if isinstance(visual.image_size, tuple | list) else (
            visual.image_size, visual.image_size)
        self.dim = int(visual.proj.shape[1])
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.cache = EmbeddingCache(cache_mb) if cache_mb > 0 else None
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> CLIPVisionEncoder:
        return super().train(False)  # frozen: never in training mode (patch dropout stays off)

    @torch.no_grad()
    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        x = F.interpolate(images.float(), self.input_size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        tokens = visual.transformer(visual._embeds(x.to(visual.conv1.weight.dtype)))
        patches = visual.ln_post(tokens[:, 1:]) @ visual.proj  # the class token (index 0) is dropped
        gh, gw = (s // p for s, p in zip(self.input_size, visual.patch_size, strict=True))
        return patches.reshape(images.shape[0], gh, gw, self.dim).float()

    def forward(self, images: torch.Tensor, keys: list[str | None] | None = None) -> torch.Tensor:
        """(B,3,S,S) letterboxed 0..255 RGB -> (B, gh, gw, E) patch embeddings (not normalised)."""
        if self.cache is None or keys is None:
            return self._encode(images)
        return self.cache.encode(keys, images, self._encode)


def vision_tower_of(text_encoder: nn.Module | None, method: str, cache_mb: float) -> CLIPVisionEncoder:
    """The vision tower of the model's CLIP text encoder (same weights), or a clear error naming the setting."""
    from samadapt.text.clip import CLIPTextEncoder

    if not isinstance(text_encoder, CLIPTextEncoder):
        raise SamAdaptError(f"method {method} reads CLIP text and image features: set model.text_encoder: clip "
                            "(text_options: model_name and pretrained, the same CLIP for both towers)")
    return CLIPVisionEncoder(**text_encoder.spec, cache_mb=cache_mb)


def similarity_map(patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch (B,h,w,E) with its image's text embedding (B,E) -> (B,h,w)."""
    return torch.einsum("bhwe,be->bhw", F.normalize(patches, dim=-1), F.normalize(text, dim=-1))


def resample_to_grid(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,h,w,E) features over the whole input frame -> (B,H,W,E) on another grid over the same frame."""
    if tuple(features.shape[1:3]) == tuple(size):
        return features
    out = F.interpolate(features.permute(0, 3, 1, 2), size, mode="bilinear", align_corners=False)
    return out.permute(0, 2, 3, 1)
