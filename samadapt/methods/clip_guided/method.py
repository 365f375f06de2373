"""CLIP-Guided SAM (Jalilian and Bais): CLIP text, vision and similarity features inside SAM's image encoder.

A frozen CLIP runs once per image (vision tower, dense patch embeddings, cached per image key) and once per
sentence (the model's CLIP text encoder, cached per string). Its outputs reach every encoder block through a
multi-modal semantic adapter, a zero-initialised bottleneck branch parallel to the block's MLP (or attention,
or both), so at step 0 the encoder is frozen SAM's. SAM's prompt encoder and decoder interface is unchanged:
Manual mode prompts with text plus points or boxes, Semi-Automatic mode with text alone (model.train_prompts /
model.eval_prompts). `features` picks what feeds the adapters (the paper's ablation: text; text+vision;
text+vision+similarity). Trained: the adapters (with their projections) and the mask decoder.
"""

from collections.abc import Sequence
from typing import Literal

import torch
from segment_anything.modeling import Sam
from torch import nn

from samadapt.errors import SamAdaptError
from samadapt.methods.base import Method
from samadapt.methods.clip_guided.layers import FEATURES, SemanticAdapter
from samadapt.methods.injection import BlockWrapper, wrap_encoder_blocks, wrapper_additions
from samadapt.text import TextEncoder, TextFeatures
from samadapt.text.clip_vision import CLIPVisionEncoder, vision_tower_of


def clip_features(vision: CLIPVisionEncoder, images: torch.Tensor, text: TextFeatures | None,
                  keys: list | None) -> dict[str, torch.Tensor]:
    """Text (B,E), vision patches (B,h,w,E) and their cosine similarity (B,h,w,1), all on CLIP's patch grid.

    Text and patches are unit-normalised. Samples prompted without text (mask all False) get zero text and
    similarity features. The adapters resample the spatial features to SAM's grid after projecting them.
    """
    patches = nn.functional.normalize(vision(images, keys).to(images.device), dim=-1)
    out = {"vision": patches}
    if text is not None:
        has_text = text.mask.any(dim=1).to(images.dtype)
        unit_text = nn.functional.normalize(text.pooled, dim=-1) * has_text[:, None]
        out["text"] = unit_text
        out["similarity"] = torch.einsum("bhwe,be->bhw", patches, unit_text)[..., None]
    else:
        out["text"] = images.new_zeros(images.shape[0], vision.dim)
        out["similarity"] = images.new_zeros(*patches.shape[:3], 1)
    return out


class ClipGuided(Method):
    uses_text = True
    conditions_encoder = True

    def __init__(
        self,
        features: Sequence[str] = FEATURES,
        position: Literal["mlp", "attn", "both"] = "mlp",
        mlp_ratio: float = 0.25,
        clip_cache_mb: float = 256.0,
    ) -> None:
        """
        Args:
            features: any of text, vision, similarity (the ablation: [text], [text, vision], all three).
            position: adapters parallel to each block's MLP (SAM-PTx's choice), its attention, or both.
            mlp_ratio: adapter bottleneck width as a fraction of the encoder width (SU-SAM uses 0.25).
            clip_cache_mb: CLIP patch features kept per image key (0: recompute every time).
        """
        super().__init__()
        features = tuple(features)
        unknown = set(features) - set(FEATURES)
        if not features or unknown or len(set(features)) != len(features):
            raise SamAdaptError(f"clip_guided: features must be distinct names from {list(FEATURES)}, "
                                f"got {list(features)}")
        if position not in ("mlp", "attn", "both"):
            raise SamAdaptError(f"clip_guided: position must be mlp, attn or both, got {position!r}")
        if mlp_ratio <= 0:
            raise SamAdaptError(f"clip_guided: mlp_ratio must be > 0, got {mlp_ratio}")
        self.features, self.position, self.mlp_ratio = features, position, mlp_ratio
        self.clip_cache_mb = clip_cache_mb

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        self.clip_vision = vision_tower_of(text_encoder, "clip_guided", self.clip_cache_mb)
        encoder = sam.image_encoder
        width = encoder.patch_embed.proj.out_channels
        hidden = max(1, round(width * self.mlp_ratio))

        def adapter() -> SemanticAdapter:
            return SemanticAdapter(width, self.clip_vision.dim, hidden, self.features)

        def wrap(i: int, block) -> BlockWrapper:
            return BlockWrapper(block, self.context,
                                attn_branch=adapter() if self.position in ("attn", "both") else None,
                                mlp_branch=adapter() if self.position in ("mlp", "both") else None)

        wrap_encoder_blocks(encoder, wrap)

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"sam.mask_decoder": sam.mask_decoder, **wrapper_additions(sam)}

    def encode(self, sam: Sam, images: torch.Tensor, text: TextFeatures | None) -> torch.Tensor:
        self.context.clip = clip_features(self.clip_vision, images, text, self.context.image_keys)
        return super().encode(sam, images, text)
