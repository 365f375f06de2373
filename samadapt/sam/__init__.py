"""The frozen SAM core: builders, official checkpoints, the training-time encode/decode loop."""

from samadapt.sam.build import build_sam, build_sam_from_config
from samadapt.sam.checkpoint import load_sam_state_dict, save_sam_checkpoint
from samadapt.sam.config import SAM_CONFIGS, SamConfig
from samadapt.sam.loop import decode, embed_prompts, encode_images

__all__ = ["SAM_CONFIGS", "SamConfig", "build_sam", "build_sam_from_config", "decode", "embed_prompts",
           "encode_images", "load_sam_state_dict", "save_sam_checkpoint"]
