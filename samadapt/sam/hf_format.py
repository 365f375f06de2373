"""Hugging Face `transformers.SamModel` weights under the official segment-anything key names.

The two hold the same tensors in the same layouts (pos_embed (1,H,W,C), rel_pos (2S-1, head_dim), qkv fused);
only the names differ. Names from transformers 5.23 models/sam/modeling_sam.py: SamVisionEncoder (patch_embed.
projection, layers.N.layer_norm1/2, neck.conv1/layer_norm1/conv2/layer_norm2), SamPromptEncoder (mask_embed.conv1..3,
point_embed.N), SamMaskDecoder (upscale_conv1/upscale_layer_norm/upscale_conv2; SamFeedForward proj_in, layers.K,
proj_out), SamModel.shared_image_embedding (the random Fourier matrix, tied to the prompt encoder's copy).
"""

import re

import torch

from samadapt.errors import SamAdaptError

# A key only a SamModel state dict has.
HF_MARKER = "vision_encoder.patch_embed.projection.weight"

# (pattern, replacement) applied to the first matching HF key; MLP heads (proj_in / layers / proj_out) apart.
_RENAMES = [
    (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^vision_encoder\.pos_embed$", "image_encoder.pos_embed"),
    (r"^vision_encoder\.layers\.(\d+)\.layer_norm([12])\.", r"image_encoder.blocks.\1.norm\2."),
    (r"^vision_encoder\.layers\.(\d+)\.(attn|mlp)\.", r"image_encoder.blocks.\1.\2."),
    (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (r"^(?:shared_image_embedding|prompt_encoder\.shared_embedding)\.positional_embedding$",
     "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    (r"^prompt_encoder\.(not_a_point_embed|no_mask_embed)\.", r"prompt_encoder.\1."),
    # official mask_downscaling = Sequential(conv, LayerNorm2d, GELU, conv, LayerNorm2d, GELU, conv)
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"^mask_decoder\.(iou_token|mask_tokens)\.", r"mask_decoder.\1."),
    # official output_upscaling = Sequential(convT, LayerNorm2d, GELU, convT, GELU)
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.layer_norm([1-4])\.", r"mask_decoder.transformer.layers.\1.norm\2."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token|mlp)\.",
     r"mask_decoder.transformer.layers.\1.\2."),
    (r"^mask_decoder\.transformer\.final_attn_token_to_image\.", "mask_decoder.transformer.final_attn_token_to_image."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
]
# SamFeedForward(proj_in, layers.0..n-3, proj_out) is the official MLP's layers.0..n-1
_FEED_FORWARD = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\."
                           r"(proj_in|layers\.(\d+)|proj_out)\.(weight|bias)$")


def is_hf_sam(state: dict) -> bool:
    return HF_MARKER in state


def _feed_forward_depths(state: dict) -> dict[str, int]:
    """Each SamFeedForward head's number of linear layers (proj_in + layers + proj_out)."""
    hidden: dict[str, set[str]] = {}
    for key in state:
        match = _FEED_FORWARD.match(key)
        if match:
            hidden.setdefault(match.group(1), set())
            if match.group(3) is not None:
                hidden[match.group(1)].add(match.group(3))
    return {head: len(inner) + 2 for head, inner in hidden.items()}


def hf_to_official(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The official state dict of a SamModel state dict; a key with no official name is refused, naming it."""
    depths = _feed_forward_depths(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _FEED_FORWARD.match(key)
        if match:
            head, part, inner, kind = match.groups()
            index = 0 if part == "proj_in" else depths[head] - 1 if part == "proj_out" else int(inner) + 1
            out[f"{head}.layers.{index}.{kind}"] = value
            continue
        for pattern, replacement in _RENAMES:
            new, found = re.subn(pattern, replacement, key)
            if found:
                out[new] = value
                break
        else:
            raise SamAdaptError(f"{source}: {key!r} has no counterpart in segment_anything's SAM (SamModel "
                                "variants such as SAM-HQ or SAM 2 are not supported); give plain SamModel weights")
    return out


def random_sam_model(config=None, seed: int = 0):
    """A `transformers.SamModel` (default config: ViT-B) with every weight random at a sane scale, for parity tests
    and the bench: transformers starts pos_embed and rel_pos at zero, which would hide a wrong mapping of them.
    The random Fourier matrix of the positional encoding keeps its own scale."""
    from transformers import SamConfig, SamModel

    torch.manual_seed(seed)
    model = SamModel(config or SamConfig()).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "positional_embedding" in name:
                continue
            noise = torch.randn(param.shape, generator=gen)
            if "pos_embed" in name or "rel_pos" in name or param.ndim == 1:
                param.add_(0.1 * noise)
            else:
                param.copy_(noise * param[0].numel() ** -0.5)
    return model
