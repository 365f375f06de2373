"""Frozen text encoders behind one interface (`TextEncoder` -> `TextFeatures`)."""

from __future__ import annotations

from samadapt.errors import SamAdaptError
from samadapt.text.base import TextEncoder, TextFeatures
from samadapt.text.clip import CLIPTextEncoder
from samadapt.text.hf import HFTextEncoder

TEXT_ENCODERS: dict[str, type[TextEncoder]] = {
    "bert": HFTextEncoder,  # any BERT-family model loadable with transformers.AutoModel
    "clip": CLIPTextEncoder,
}


def build_text_encoder(kind: str, **kwargs) -> TextEncoder:
    """Build a frozen text encoder: kind "bert" -> HFTextEncoder(**kwargs), "clip" -> CLIPTextEncoder(**kwargs)."""
    try:
        cls = TEXT_ENCODERS[kind]
    except KeyError:
        raise SamAdaptError(f"Unknown text encoder kind {kind!r}; choose one of {sorted(TEXT_ENCODERS)}.") from None
    return cls(**kwargs)


__all__ = ["TextEncoder", "TextFeatures", "HFTextEncoder", "CLIPTextEncoder", "build_text_encoder", "TEXT_ENCODERS"]
