"""Build a frozen SAM from the official segment-anything classes, at any input size."""

from dataclasses import replace
from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samadapt.sam.checkpoint import adapt_state_dict, load_sam_state_dict
from samadapt.sam.config import SamConfig, get_config
from samadapt.sam.fused_attention import use_fused_attention


def build_sam_from_config(cfg: SamConfig, image_size: int | None = None) -> Sam:
    """A randomly initialised SAM; `image_size` overrides the config's (pos_embed / rel_pos sized to it)."""
    size = image_size or cfg.image_size
    if size % cfg.patch_size:
        from samadapt.errors import SamAdaptError

        raise SamAdaptError(f"image_size {size} is not a multiple of the patch size {cfg.patch_size}")
    grid = size // cfg.patch_size
    encoder = ImageEncoderViT(
        img_size=size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.encoder_embed_dim,
        depth=cfg.encoder_depth,
        num_heads=cfg.encoder_num_heads,
        mlp_ratio=4,
        out_chans=cfg.prompt_embed_dim,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=cfg.window_size,
        global_attn_indexes=cfg.encoder_global_attn_indexes,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=cfg.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(size, size),
        mask_in_chans=cfg.mask_in_chans,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=cfg.decoder_depth,
            embedding_dim=cfg.prompt_embed_dim,
            mlp_dim=cfg.decoder_mlp_dim,
            num_heads=cfg.decoder_num_heads,
        ),
        transformer_dim=cfg.prompt_embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )
    return Sam(encoder, prompt_encoder, decoder, pixel_mean=list(cfg.pixel_mean), pixel_std=list(cfg.pixel_std))


def build_sam(
    variant: str = "vit_b",
    checkpoint: str | None = None,
    image_size: int | None = None,
    frozen: bool = True,
    fused_attention: bool = False,
) -> Sam:
    """SAM `variant` at `image_size` (default: the variant's own), weights from an official-format checkpoint.

    A checkpoint made at another size is resized on load (pos_embed, global-attention rel_pos).
    `fused_attention` runs the encoder's attention through SDPA (same weights, same state-dict names).
    """
    cfg = get_config(variant)
    sam = build_sam_from_config(cfg, image_size)
    if checkpoint is not None:
        state = load_sam_state_dict(checkpoint, expected_variant=variant)
        sam.load_state_dict(adapt_state_dict(state, sam))
    if fused_attention:
        use_fused_attention(sam.image_encoder)
    if frozen:
        sam.requires_grad_(False)
    return sam.eval()


def tiny_config(**overrides) -> SamConfig:
    """The tiny config with some fields changed (tests use smaller images)."""
    return replace(get_config("tiny"), **overrides)
