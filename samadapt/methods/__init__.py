"""Methods by name. The registry is a plain dict; YAML picks one with `model.method: <name>`."""

from samadapt.methods.add_decoder_layers import AddDecoderLayers
from samadapt.methods.base import Method
from samadapt.methods.clip_guided import ClipGuided
from samadapt.methods.clip_points import ClipPoints
from samadapt.methods.decoder_only import DecoderOnly
from samadapt.methods.dit import DeepInstructionTuning
from samadapt.methods.full import FullFinetune
from samadapt.methods.lora import LoRA
from samadapt.methods.prompt_learning import PromptLearning
from samadapt.methods.ptx import ParallelAdapter, SamPtx
from samadapt.methods.shallow_fusion import ShallowFusion

METHODS: dict[str, type[Method]] = {
    "decoder_only": DecoderOnly,
    "shallow_fusion": ShallowFusion,
    "add_decoder_layers": AddDecoderLayers,
    "dit": DeepInstructionTuning,
    "full": FullFinetune,
    "parallel_adapter": ParallelAdapter,
    "sam_ptx": SamPtx,
    "plm": PromptLearning,
    "clip_guided": ClipGuided,
    "lora": LoRA,
    "clip_points": ClipPoints,
}


def build_method(name: str, options: dict | None = None) -> Method:
    from samadapt.errors import SamAdaptError

    if name not in METHODS:
        raise SamAdaptError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    try:
        return METHODS[name](**(options or {}))
    except TypeError as err:
        raise SamAdaptError(f"bad options for method {name!r}: {err}") from None


__all__ = ["METHODS", "Method", "build_method"]
