"""`samadapt export --ckpt RUN.ckpt --out DIR`: a trained adapter as a small, pickle-free, Hub-ready folder.

    DIR/adapter.safetensors   the trainable weights (EMA weights when the run kept an EMA: what it evaluated)
    DIR/samadapt_config.json  base SAM variant (and its checkpoint's file name and SHA-256), method and options,
                              text encoder and options, image size, prompts and threshold
    DIR/README.md             a Hugging Face model card: base SAM and hash, method, text encoder, data, the run's
                              test metrics when it was tested, licence

Loading needs the base SAM checkpoint and this folder only: `SamAdaptPredictor.from_pretrained(DIR or Hub id,
sam_checkpoint)`. Each file is written atomically and the config last, so a folder with a config is complete.
The config was `adapter_config.json` before; that name is peft's (another schema), so it is only read, for
folders exported earlier. `--merge` writes an official SAM checkpoint instead (see merge_into_sam).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.inference.model_card import data_of, model_card, run_results
from samadapt.io import atomic_write, atomic_write_json, output_file, output_folder

# torch, safetensors and the module load inside the functions that use them: `samadapt export --help` and a
# mistyped option answer at once, not after seconds of imports.
if TYPE_CHECKING:
    import torch

    from samadapt.training.module import SamAdaptModule

log = logging.getLogger(__name__)
WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "samadapt_config.json"
LEGACY_CONFIG_FILE = "adapter_config.json"  # read for one release; peft owns this name
CARD_FILE = "README.md"
FORMAT = "samadapt-adapter/1"
# The module arguments that shape the network or its outputs; training-only arguments are left out.
MODEL_ARGS = ("method", "method_options", "sam_variant", "image_size", "letterbox", "text_encoder", "text_options",
              "train_image_encoder", "train_text_encoder", "train_prompts", "eval_prompts", "threshold",
              "threshold_on")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise MissingFileError(path, "checkpoint", "Give the .ckpt a training run wrote (<run>/checkpoints/).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle that needs globals, a truncated file, not a torch file at all
        raise SamAdaptError(f"cannot read {path} as a samadapt checkpoint: {err}") from err
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise SamAdaptError(f"{path} is not a samadapt training checkpoint (no hyper_parameters / state_dict)")
    return checkpoint


def adapter_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The checkpoint's trainable weights (it keeps nothing else), with the EMA's values when it has them."""
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    weights.update(checkpoint.get("ema") or {})
    return {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}


def export_adapter(checkpoint_path: str | Path, out: str | Path, license_id: str = "other") -> Path:
    from safetensors.torch import save_file

    checkpoint_path, out = Path(checkpoint_path), Path(out)
    checkpoint = read_checkpoint(checkpoint_path)
    hparams = dict(checkpoint["hyper_parameters"])
    weights = adapter_weights(checkpoint)
    base = Path(hparams.get("sam_checkpoint") or "")
    config = {
        "format": FORMAT,
        "base_sam": {"variant": hparams["sam_variant"], "checkpoint_name": base.name or None,
                     "sha256": sha256(base) if base.is_file() else None},
        "method": hparams["method"],
        "method_options": hparams.get("method_options") or {},
        "text_encoder": hparams.get("text_encoder"),
        "text_options": hparams.get("text_options") or {},
        "module": {k: hparams[k] for k in MODEL_ARGS if k in hparams},
        "trainable_params": sum(v.numel() for v in weights.values()),
        "weights": WEIGHTS_FILE,
        "exported_from": str(checkpoint_path),
    }
    atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(weights, tmp, metadata={"format": FORMAT}))
    results = run_results(checkpoint_path)
    card = model_card(config, data_of(checkpoint, results), results, license_id)
    atomic_write(out / CARD_FILE, lambda tmp: Path(tmp).write_text(card))
    atomic_write_json(config, out / CONFIG_FILE)
    return out


def read_export_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file() and (folder / LEGACY_CONFIG_FILE).is_file():
        path = folder / LEGACY_CONFIG_FILE
    if not path.is_file():
        raise MissingFileError(folder / CONFIG_FILE, "adapter config", "Give a folder written by `samadapt export`.")
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SamAdaptError(f"cannot read {path}: {err}") from err
    if config.get("format") != FORMAT:
        raise SamAdaptError(f"{path} is not a {FORMAT} config (format {config.get('format')!r})")
    return config


def load_export(folder: str | Path, sam_checkpoint: str | Path, text_options: dict | None = None) -> SamAdaptModule:
    """The module rebuilt from the base SAM checkpoint and an export folder, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_export_config(folder)
    expected_sha = config["base_sam"].get("sha256")
    if expected_sha and Path(sam_checkpoint).is_file() and sha256(Path(sam_checkpoint)) != expected_sha:
        log.warning("%s is not the SAM checkpoint this adapter was trained on (%s, SHA-256 differs): "
                    "masks may be wrong", sam_checkpoint, config["base_sam"].get("checkpoint_name"))
    args = {**config["module"], "sam_checkpoint": str(sam_checkpoint)}
    if text_options is not None:
        args["text_options"] = text_options
    try:
        weights = load_file(folder / config.get("weights", WEIGHTS_FILE))
    except (OSError, SafetensorError) as err:
        raise SamAdaptError(f"cannot read {folder / WEIGHTS_FILE}: {err}. Export the checkpoint again.") from err
    return module_with_weights(args, weights, folder / WEIGHTS_FILE)


def module_with_weights(args: dict, weights: dict[str, torch.Tensor], source: Path) -> SamAdaptModule:
    """SamAdaptModule(**args) with `weights` as its trainable weights (exactly those), in eval mode."""
    from samadapt.training.module import SamAdaptModule

    module = SamAdaptModule(**args)
    expected = set(module.model.trainable_state_dict())
    if set(weights) != expected:
        odd = sorted(set(weights) ^ expected)
        raise SamAdaptError(f"{source} does not match the {args['method']} adapter its config "
                            f"describes ({len(odd)} weights differ, e.g. {odd[0]})")
    module.model.load_state_dict(weights, strict=False)
    return module.eval()


def pretrained_folder(path_or_repo_id: str | Path, revision: str | None = None) -> Path:
    """A local export folder as it is, or a Hub repository's files through huggingface_hub (cached)."""
    if Path(path_or_repo_id).exists():
        return Path(path_or_repo_id)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(path_or_repo_id), revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "*.md"]))
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = ("not in the Hugging Face cache, and HF_HUB_OFFLINE is set: download it once online, or"
               if offline else f"the Hub did not give it ({type(err).__name__}): check the id and your access, or")
        raise SamAdaptError(f"adapter {path_or_repo_id!r} is not a local folder and {why} give the folder "
                            "`samadapt export` wrote") from None


def load_pretrained(path_or_repo_id: str | Path, sam_checkpoint: str | Path | None = None,
                    text_options: dict | None = None, revision: str | None = None) -> SamAdaptModule:
    """An exported adapter from a folder or the Hub on its base SAM (default checkpoints/<the recorded file name>)."""
    folder = pretrained_folder(path_or_repo_id, revision)
    if sam_checkpoint is None:
        name = read_export_config(folder)["base_sam"].get("checkpoint_name")
        if not name:
            raise SamAdaptError(f"{path_or_repo_id} does not name its base SAM checkpoint: pass sam_checkpoint=")
        sam_checkpoint = Path("checkpoints") / name
    return load_export(folder, sam_checkpoint, text_options)


# Methods whose result is SAM itself with other weights, so an official checkpoint can hold it.
MERGEABLE = ("decoder_only", "full", "lora")


def _fold_lora(sam: torch.nn.Module) -> None:
    """Each peft LoRA layer's B @ A * scale added into its frozen base nn.Linear, which then takes its place."""
    from peft.tuners.lora import LoraLayer

    for name, layer in list(sam.named_modules()):
        if isinstance(layer, LoraLayer):
            layer.merge()
            parent, _, child = name.rpartition(".")
            setattr(sam.get_submodule(parent), child, layer.get_base_layer())


def merge_into_sam(checkpoint_path: str | Path, out: str | Path, sam_checkpoint: str | None = None) -> int:
    """Write the run's SAM (trained weights, EMA values when kept, LoRA folded in) as an official-format .pth at
    the run's image size; return that size. Methods that add layers or read text are refused with the reason."""
    from samadapt.methods import METHODS
    from samadapt.sam import build_sam_from_config, save_sam_checkpoint
    from samadapt.sam.config import get_config

    checkpoint_path = Path(checkpoint_path)
    checkpoint = read_checkpoint(checkpoint_path)
    hparams = checkpoint["hyper_parameters"]
    method = hparams["method"]
    if method not in MERGEABLE:
        why = ("it reads text, and SAM has no text input" if getattr(METHODS.get(method), "uses_text", False)
               else "its trained parts are layers or prompts that SAM does not have")
        raise SamAdaptError(f"{checkpoint_path}: a {method} run cannot be merged into a SAM checkpoint: "
                            f"{why}. Only {', '.join(MERGEABLE)} runs change SAM's own weights; export the "
                            "adapter instead (samadapt export without --merge).")
    if hparams.get("letterbox", "top_left") != "top_left":
        raise SamAdaptError(f"{checkpoint_path}: this run was trained with letterbox {hparams['letterbox']!r}; "
                            "SamPredictor and the tools built on it place images top-left, so the merged SAM "
                            "would see inputs unlike its training. Export the adapter instead (without --merge).")
    base = sam_checkpoint or hparams.get("sam_checkpoint")
    args = {**{k: hparams[k] for k in MODEL_ARGS if k in hparams}, "sam_checkpoint": base and str(base)}
    module = module_with_weights(args, adapter_weights(checkpoint), checkpoint_path)  # EMA values when kept
    sam = module.model.sam
    _fold_lora(sam)
    official = build_sam_from_config(get_config(module.hparams.sam_variant), module.model.image_size)
    if set(sam.state_dict()) != set(official.state_dict()):
        odd = sorted(set(sam.state_dict()) ^ set(official.state_dict()))
        raise SamAdaptError(f"{checkpoint_path}: the merged SAM's weights do not match the official names "
                            f"({len(odd)} differ, e.g. {odd[0]})")
    save_sam_checkpoint(sam, out)
    return module.model.image_size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt export", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True, help="a training run's checkpoint (.ckpt)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (with --merge: the .pth file)")
    parser.add_argument(
        "--merge", action="store_true",
        help=f"write one official-format SAM .pth with the run's trained weights in it ({', '.join(MERGEABLE)} "
             "runs; LoRA folded into qkv), for segment_anything's SamPredictor and the tools built on it. Its "
             "pos_embed and rel_pos are at the run's image size (model.image_size): a 1024 px run loads with "
             "sam_model_registry[variant](checkpoint=OUT); for another size build the official classes with "
             "img_size=that size (the command prints it)")
    parser.add_argument("--sam-checkpoint", help="with --merge: the base SAM (default: the path the run recorded)")
    parser.add_argument("--license", default="other",
                        help="the licence field of the model card (a Hub licence id such as apache-2.0; default other)")
    args = parser.parse_args(argv)
    (output_file if args.merge else output_folder)(args.out)  # a file where the folder goes (or the reverse) stops
    if args.merge:
        size = merge_into_sam(args.ckpt, args.out, args.sam_checkpoint)
        print(f"[export] {args.out}: an official-format SAM checkpoint for {size} px input"
              + ("" if size == 1024 else f" (build the official classes with img_size={size})"))
        return
    out = export_adapter(args.ckpt, args.out, args.license)
    size = (out / WEIGHTS_FILE).stat().st_size
    print(f"[export] {out / WEIGHTS_FILE} ({size / 2**20:.2f} MB), {out / CONFIG_FILE} and the model card "
          f"{out / CARD_FILE}")
