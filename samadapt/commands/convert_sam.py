"""`samadapt convert-sam IN OUT`: SAM weights in the Hugging Face SamModel format as an official-format .pth.

IN is a `SamModel.save_pretrained` folder (model.safetensors, a sharded index or pytorch_model.bin), one of its
weight files, or an official checkpoint; OUT is the plain state dict segment_anything's `sam_model_registry`
loads. Nothing is executed while reading: safetensors, or torch.load(weights_only=True).
Every samadapt option that takes a SAM checkpoint also takes IN directly; convert for tools outside samadapt.
"""

import argparse
from pathlib import Path

from samadapt.io import atomic_torch_save
from samadapt.sam.checkpoint import describe, identify_variant, load_sam_state_dict


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt convert-sam", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="Hugging Face SamModel folder or weights file (or an official .pth)")
    parser.add_argument("out", type=Path, help="the official-format .pth to write")
    args = parser.parse_args(argv)
    state = load_sam_state_dict(args.source)
    atomic_torch_save({k: v.contiguous() for k, v in state.items()}, args.out)
    variant = identify_variant(state) or "non-standard size"
    print(f"[convert-sam] {args.out}: {len(state)} tensors, {variant} ({describe(state)})")
