"""SAM checkpoints: safe loading (official .pth or Hugging Face SamModel weights), variant detection, resizing
to another input size, saving in the official format."""

import json
import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from samadapt.errors import MissingFileError, SamAdaptError, UnsafeFileError
from samadapt.io import atomic_torch_save
from samadapt.sam.config import OFFICIAL_DOWNLOAD, SAM_CONFIGS
from samadapt.sam.hf_format import hf_to_official, is_hf_sam

# What a `SamModel.save_pretrained` folder holds, in the order tried (transformers' own file names).
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")

# Keys every official SAM state dict has, whatever the variant.
_REQUIRED_KEYS = (
    "image_encoder.patch_embed.proj.weight",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "mask_decoder.iou_token.weight",
)


def _how_to_get(variant: str | None) -> str:
    if variant in SAM_CONFIGS and SAM_CONFIGS[variant].official_checkpoint:
        name = SAM_CONFIGS[variant].official_checkpoint
        return f"Download {OFFICIAL_DOWNLOAD}{name} into checkpoints/ (or point model.sam_checkpoint at your copy)."
    return "Point model.sam_checkpoint at an official SAM checkpoint (sam_vit_b_01ec64.pth and friends)."


def load_sam_state_dict(path: str | Path, expected_variant: str | None = None) -> dict[str, torch.Tensor]:
    """The official-format state dict of an official checkpoint (.pth, read with weights_only=True) or of Hugging
    Face SamModel weights (a save_pretrained folder, its model.safetensors or pytorch_model.bin), keys renamed.
    Anything else is refused with one clear sentence; no file is ever allowed to run code."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "SAM checkpoint", _how_to_get(expected_variant))
    state = _read_tensors(_weights_file(path), expected_variant)
    if isinstance(state, dict) and is_hf_sam(state):
        state = hf_to_official(state, str(path))
    if not isinstance(state, dict) or not all(k in state for k in _REQUIRED_KEYS):
        raise SamAdaptError(
            f"{path} is not a SAM state dict: neither an official SAM checkpoint (keys such as {_REQUIRED_KEYS[0]!r}) "
            "nor Hugging Face SamModel weights (keys such as 'vision_encoder.patch_embed.projection.weight'). "
            + _how_to_get(expected_variant)
        )
    found = identify_variant(state)
    if expected_variant is not None and found != expected_variant:
        raise SamAdaptError(
            f"{path} looks like a {found or 'non-standard'} checkpoint ({describe(state)}), "
            f"but the model is configured as {expected_variant}; set model.sam_variant={found}"
            if found else f"{path} does not match SAM {expected_variant} ({describe(state)})."
        )
    return state


def _weights_file(path: Path) -> Path:
    """The file to read: `path` itself, or the weights inside a save_pretrained folder."""
    if not path.is_dir():
        return path
    for name in HF_WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise MissingFileError(path / HF_WEIGHT_FILES[0], "SAM weights",
                           f"{path} is a folder: give an official .pth file or a Hugging Face SamModel folder "
                           f"(save_pretrained writes {HF_WEIGHT_FILES[0]}).")


def _read_tensors(path: Path, expected_variant: str | None) -> dict:
    """Tensors by name from a safetensors file, a sharded safetensors index, or a plain torch state dict."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.name.endswith(".index.json"):  # sharded: {"weight_map": {tensor name: shard file}}
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(path.parent / shard).items()}
        if path.suffix == ".safetensors":
            return load_file(path)
    except (OSError, SafetensorError, KeyError, ValueError) as err:
        raise SamAdaptError(f"{path} cannot be read as safetensors SAM weights ({_first_line(err)}). "
                            f"{_how_to_get(expected_variant)}") from None
    return _torch_load(path, expected_variant)


def _torch_load(path: Path, expected_variant: str | None):
    if path.is_file() and path.stat().st_size == 0:
        raise SamAdaptError(f"{path} is empty (0 bytes): its download or copy did not finish. "
                            + _how_to_get(expected_variant))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", str(err))
        if refused:  # the pickle names a function or class to call: refuse, never run it
            raise UnsafeFileError(
                f"{path} is not a plain tensor checkpoint: loading it would call {refused.group(1)}. "
                "Official SAM checkpoints are plain state dicts; do not load this file."
            ) from None
        raise SamAdaptError(f"{path} cannot be read as a PyTorch checkpoint (corrupt or not a torch file). "
                            + _how_to_get(expected_variant)) from None
    except Exception as err:  # truncated file, not a torch file at all, ...
        raise SamAdaptError(f"{path} cannot be read as a PyTorch checkpoint ({_first_line(err)}). "
                            f"{_how_to_get(expected_variant)}") from None


def _first_line(err: Exception) -> str:
    """"Type: first line of the message" (many loaders raise with an empty message, e.g. EOFError)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def describe(state: dict[str, torch.Tensor]) -> str:
    width = state["image_encoder.patch_embed.proj.weight"].shape[0]
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    return f"encoder width {width}, {depth} blocks"


def identify_variant(state: dict[str, torch.Tensor]) -> str | None:
    """The registry name whose encoder width, depth and patch size match the state dict, if any."""
    weight = state["image_encoder.patch_embed.proj.weight"]
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    for name, cfg in SAM_CONFIGS.items():
        if (weight.shape[0], depth, weight.shape[-1]) == (cfg.encoder_embed_dim, cfg.encoder_depth, cfg.patch_size):
            return name
    return None


def adapt_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Resize size-dependent tensors (pos_embed, rel_pos tables) of `state` to `model`'s input size."""
    target = model.state_dict()
    out = {}
    for key, value in state.items():
        want = target.get(key)
        if want is None or want.shape == value.shape:
            out[key] = value
        elif key.endswith("pos_embed"):  # (1, H, W, C) grid of absolute positions
            grid = value.permute(0, 3, 1, 2).float()
            grid = F.interpolate(grid, size=want.shape[1:3], mode="bicubic", align_corners=False)
            out[key] = grid.permute(0, 2, 3, 1).to(value.dtype)
        elif key.endswith(("rel_pos_h", "rel_pos_w")):  # (2S-1, head_dim) table of relative offsets
            table = value.t().unsqueeze(0).float()
            table = F.interpolate(table, size=want.shape[0], mode="linear", align_corners=False)
            out[key] = table.squeeze(0).t().to(value.dtype)
        else:
            raise SamAdaptError(f"checkpoint tensor {key} has shape {tuple(value.shape)}, "
                                f"the model expects {tuple(want.shape)}")
    return out


def save_sam_checkpoint(sam: torch.nn.Module, path: str | Path) -> None:
    """Write a plain state dict, the format Meta released, atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in sam.state_dict().items()}
    if not all(k in state for k in _REQUIRED_KEYS):
        raise SamAdaptError("save_sam_checkpoint expects a plain segment_anything Sam module")
    atomic_torch_save(state, path)
