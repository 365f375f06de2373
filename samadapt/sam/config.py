"""SAM architectures as plain dataclasses in a dict registry (the shape of segment-anything's own builder)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamConfig:
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024  # the size the official checkpoints were trained at
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256  # = encoder out_chans = decoder transformer_dim
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    official_checkpoint: str = field(default="", compare=False)  # file name of Meta's release


SAM_CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11), official_checkpoint="sam_vit_b_01ec64.pth"),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23), official_checkpoint="sam_vit_l_0b3195.pth"),
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31), official_checkpoint="sam_vit_h_4b8939.pth"),
    # Stand-in for tests and the demo: ~0.8M parameters, 128 px, a 16x16 token grid, 64-wide decoder.
    "tiny": SamConfig(
        encoder_embed_dim=96,
        encoder_depth=4,
        encoder_num_heads=3,
        encoder_global_attn_indexes=(1, 3),
        image_size=128,
        patch_size=8,
        window_size=8,
        prompt_embed_dim=64,
        decoder_mlp_dim=256,
        decoder_num_heads=4,
        iou_head_hidden_dim=64,
    ),
}

OFFICIAL_DOWNLOAD = "https://dl.fbaipublicfiles.com/segment_anything/"


def get_config(variant: str) -> SamConfig:
    from samadapt.errors import SamAdaptError

    if variant not in SAM_CONFIGS:
        raise SamAdaptError(f"unknown SAM variant {variant!r}; choose one of {sorted(SAM_CONFIGS)}")
    return SAM_CONFIGS[variant]
