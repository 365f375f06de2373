"""The training-time path through SAM. `Sam.forward` runs under no_grad, so training calls the parts directly.

SAM's MaskDecoder repeats one image embedding for each of its prompts, so decoding is one call per image.
"""

import torch
from segment_anything.modeling import Sam

PAD_LABEL = -1  # collate pads point lists with this label; SAM uses it for "not a point" too


def encode_images(sam: Sam, images: torch.Tensor) -> torch.Tensor:
    """(B,3,S,S) letterboxed 0..255 RGB -> (B,C,S/p,S/p) image embeddings."""
    return sam.image_encoder(normalize(sam, images))


def normalize(sam: Sam, images: torch.Tensor) -> torch.Tensor:
    return (images - sam.pixel_mean) / sam.pixel_std


def embed_prompts(
    sam: Sam,
    points: torch.Tensor | None = None,
    point_labels: torch.Tensor | None = None,
    box: torch.Tensor | None = None,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse (1,N,C) and dense (1,C,h,w) embeddings for ONE sample's prompts.

    Collate padding (label -1) is dropped first, so a sample's result does not depend on its batch; SAM then
    adds its own padding point exactly as the official predictor does. `mask`: a previous low-res logit mask
    (1,4h,4w) or (1,1,4h,4w) in the input frame, SamPredictor's `mask_input`; None gives SAM's no-mask embedding.
    """
    point_input = None
    if points is not None and point_labels is not None:
        keep = point_labels != PAD_LABEL
        if keep.any():
            point_input = (points[keep][None].float(), point_labels[keep][None])
    box_input = None if box is None else box.reshape(1, 4).float()
    mask_input = None if mask is None else mask.reshape(1, 1, *mask.shape[-2:]).float()
    return sam.prompt_encoder(points=point_input, boxes=box_input, masks=mask_input)


def decode(
    sam: Sam,
    image_embedding: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    multimask_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image (1,C,h,w) with its k prompt sets (k,N,C) -> low-res logits (k,M,4h,4w) and IoU (k,M)."""
    return sam.mask_decoder(
        image_embeddings=image_embedding,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
    )
