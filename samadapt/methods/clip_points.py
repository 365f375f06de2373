"""External coupling (the VLM + SAM pipelines CLIP-Guided SAM compares with): CLIP finds, frozen SAM segments.

No training. The cosine similarity of CLIP's patch embeddings with the sentence's CLIP embedding is resampled
to SAM's token grid; its highest local maxima inside the image (not the letterbox padding) become positive
point prompts, optionally its lowest cells negative ones, and the untouched SAM decodes them. Evaluate it
with `samadapt validate|test` (eval_prompts: text); `fit` has nothing to train and says so.
"""

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

from samadapt.errors import SamAdaptError
from samadapt.methods.base import Method
from samadapt.sam.loop import embed_prompts, encode_images
from samadapt.text import TextEncoder, TextFeatures
from samadapt.text.clip_vision import resample_to_grid, similarity_map, vision_tower_of


def content_extent(images: torch.Tensor, padding: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of each letterboxed image's content, wherever the letterbox put it: the
    padding is `padding` (SAM's pixel mean, (3,) or (3,1,1), which no 0..255 integer pixel equals)."""
    inside = (images != padding.reshape(1, 3, 1, 1).to(images)).any(dim=1)  # (B,S,S)
    out = []
    for m in inside:
        rows, cols = m.any(dim=1).nonzero(), m.any(dim=0).nonzero()
        if not len(rows):
            out.append((0, 0, m.shape[0], m.shape[1]))
            continue
        out.append((int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
    return out


def peak_points(sim: torch.Tensor, size: int, extent: tuple[int, int, int, int], positives: int,
                negatives: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (K,2) xy in the S x S input frame and labels (K,) from one similarity map (H,W).

    Positives: the `positives` highest local maxima (3x3), negatives: the `negatives` lowest cells, both among
    cells whose centre lies inside the image content.
    """
    h, w = sim.shape
    ys = (torch.arange(h, device=sim.device) + 0.5) * size / h
    xs = (torch.arange(w, device=sim.device) + 0.5) * size / w
    top, left, bottom, right = extent
    inside = (ys[:, None] >= top) & (ys[:, None] < bottom) & (xs[None, :] >= left) & (xs[None, :] < right)
    is_peak = sim >= F.max_pool2d(sim[None, None], 3, stride=1, padding=1)[0, 0]
    low = float("-inf")
    peaks = torch.where(inside & is_peak, sim, low).flatten()
    chosen = [i for i in peaks.topk(min(positives, peaks.numel())).indices.tolist() if peaks[i] > low]
    labels = [1] * len(chosen)
    if negatives:
        lows = torch.where(inside, -sim, low).flatten().topk(min(negatives, sim.numel())).indices.tolist()
        chosen += lows
        labels += [0] * len(lows)
    index = torch.tensor(chosen, device=sim.device, dtype=torch.long)
    points = torch.stack([xs[index % w], ys[index // w]], dim=1)
    return points, torch.tensor(labels, device=sim.device, dtype=torch.long)


class ClipPoints(Method):
    uses_text = True
    # SAM's encoder is untouched, but `encode` also places the points from the text, so the model must call it
    # with the batch's text every time (never serve this method from the image-embedding cache).
    conditions_encoder = True
    needs_training = False

    def __init__(self, positives: int = 1, negatives: int = 0, clip_cache_mb: float = 256.0) -> None:
        """
        Args:
            positives: foreground points, at the highest local maxima of the similarity map.
            negatives: background points, at its lowest cells (0: none).
            clip_cache_mb: CLIP patch features kept per image key.
        """
        super().__init__()
        if positives < 1 or negatives < 0:
            raise SamAdaptError(f"clip_points: need positives >= 1 and negatives >= 0, got {positives}, {negatives}")
        self.positives, self.negatives, self.clip_cache_mb = positives, negatives, clip_cache_mb

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        self.clip_vision = vision_tower_of(text_encoder, "clip_points", self.clip_cache_mb)
        encoder = sam.image_encoder
        self.grid = (encoder.img_size // encoder.patch_embed.proj.kernel_size[0],) * 2

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {}

    def encode(self, sam: Sam, images: torch.Tensor, text: TextFeatures | None) -> torch.Tensor:
        """SAM's own embeddings; the batch's CLIP points go to the context, one per sample in order."""
        points = self.context.points = [None] * images.shape[0]
        if text is not None:
            patches = self.clip_vision(images, self.context.image_keys).to(images.device)
            sims = resample_to_grid(similarity_map(patches, text.pooled)[..., None], self.grid)[..., 0]
            has_text = text.mask.any(dim=1).tolist()
            for i, extent in enumerate(content_extent(images, sam.pixel_mean)):
                if has_text[i]:
                    points[i] = peak_points(sims[i], images.shape[-1], extent, self.positives, self.negatives)
        return encode_images(sam, images)

    def prompt_embeddings(self, sam: Sam, sparse, dense, text: TextFeatures | None, image_embedding):
        if not self.context.points:
            raise RuntimeError("clip_points: prompt_embeddings called more often than the batch has samples")
        found = self.context.points.pop(0)
        if text is None or found is None:
            return sparse, dense
        points, labels = found
        if sparse.shape[1]:
            raise SamAdaptError("clip_points places its own points from the text: evaluate it with "
                                "eval_prompts: text (no points or box)")
        return embed_prompts(sam, points, labels)
