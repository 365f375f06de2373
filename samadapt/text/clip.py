"""CLIP text tower through `open_clip`: per-token features and the official text embedding."""

from __future__ import annotations

import os

import torch
from torch import nn

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.text.base import TextEncoder, TextFeatures

_HOW_TO_GET_CLIP = (
    "Download the weights once with network access, e.g. "
    "`python -c \"import open_clip; open_clip.create_model('{model}', pretrained='{tag}')\"`, "
    "or pass a local weights file path as `pretrained`."
)


def _cached_tag_file(model_name: str, tag: str) -> str:
    """Local file of an open_clip pretrained tag, looked up in the caches only (never downloads)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    looked: list[str] = []
    if cfg.get("file"):
        looked.append(cfg["file"])
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        names = [filename]
        if filename == "open_clip_pytorch_model.bin":
            names.insert(0, "open_clip_model.safetensors")
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(repo_id, name)
            if isinstance(hit, str):
                return hit
            looked.append(f"hf://{repo_id}/{name}")
    if cfg.get("url"):
        looked.append(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(cfg["url"])))
    for path in looked:
        if not path.startswith("hf://") and os.path.isfile(path):
            return path
    raise MissingFileError(
        " or ".join(looked) or f"{model_name}/{tag}",
        f"open_clip weights '{model_name}' / '{tag}'",
        _HOW_TO_GET_CLIP.format(model=model_name, tag=tag),
    )


def _load_weights(model: nn.Module, path: str) -> None:
    import open_clip

    open_clip.load_checkpoint(model, path, strict=True, weights_only=True)


def load_open_clip(model_name: str, pretrained: str | None, model_cfg: dict | None):
    """An open_clip CLIP (both towers) and its tokenizer, weights from a local tag cache or file (never downloads).

    pretrained: an open_clip tag read from the local caches, a weights file path, or None (random weights);
    model_cfg: keyword arguments of `open_clip.CLIP` for a custom model (then `pretrained` is a file or None).
    """
    import open_clip

    is_tag = (
        model_cfg is None and pretrained is not None and bool(open_clip.get_pretrained_cfg(model_name, pretrained))
    )
    weights = None
    if pretrained is not None and not is_tag:
        weights = os.path.expanduser(pretrained)
        if not os.path.isfile(weights):
            tags = (
                ""
                if model_cfg is not None
                else (
                    f" Known tags for {model_name}: "
                    + (", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none")
                    + "."
                )
            )
            raise MissingFileError(weights, "CLIP weights file", "Pass an existing weights file path." + tags)
    if model_cfg is not None:
        model = open_clip.CLIP(**model_cfg)
        tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
    else:
        if model_name not in open_clip.list_models():
            raise SamAdaptError(f"Unknown open_clip model {model_name!r}; see open_clip.list_models().")
        quick_gelu = False
        if is_tag:
            weights = _cached_tag_file(model_name, pretrained)
            quick_gelu = bool(open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False))
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
        tokenizer = open_clip.get_tokenizer(model_name)
    if weights is not None:
        _load_weights(model, weights)
    return model, tokenizer


class CLIPTextEncoder(TextEncoder):
    """The frozen text tower of an open_clip CLIP model.

    tokens: output of ln_final for every position (width = text transformer width), mask True up
    to and including the end-of-text token. Because the text tower is causal, a string's tokens do
    not depend on padding. pooled: the official CLIP text embedding (`encode_text`: the EOT row
    through text_projection), NOT L2-normalised (normalise it yourself for cosine similarity).

    pretrained: an open_clip tag (e.g. "openai"), read from the local caches only, or a local
    weights file; None gives random weights. model_cfg: keyword arguments of `open_clip.CLIP`
    (embed_dim, vision_cfg, text_cfg) to build a custom (e.g. tiny) model; then `pretrained`
    must be a weights file or None. max_length truncates the token sequence (EOT kept).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        model_cfg: dict | None = None,
        max_length: int = 77,
        cache_size: int = 50_000,
    ):
        super().__init__(cache_size=cache_size)
        model, tokenizer = load_open_clip(model_name, pretrained, model_cfg)
        self._check_supported(model)
        self.model = model
        self.tokenizer = tokenizer
        self.spec = {"model_name": model_name, "pretrained": pretrained, "model_cfg": model_cfg}  # for the vision tower
        self.context_length = int(model.context_length)
        self.max_length = min(max_length, self.context_length)
        if self.max_length < 2:
            raise SamAdaptError(f"max_length must be >= 2 (room for SOT and EOT), got {max_length}")
        self.dim = int(model.transformer.width)
        proj = model.text_projection
        if proj is None:
            self.pooled_dim = self.dim
        elif isinstance(proj, nn.Linear):
            self.pooled_dim = int(proj.out_features)
        else:
            self.pooled_dim = int(proj.shape[1])
        # The vision tower is never used: drop it so it costs no memory and never reaches a checkpoint.
        self.model.visual = None
        self.freeze()

    @staticmethod
    def _check_supported(model: nn.Module) -> None:
        if not hasattr(model, "token_embedding") or not hasattr(model, "ln_final"):
            raise SamAdaptError(
                f"{type(model).__name__} has no built-in CLIP text transformer; only open_clip.CLIP models "
                "(OpenAI-style text towers) are supported by CLIPTextEncoder."
            )
        if model.text_pool_type not in ("argmax", "eos"):
            raise SamAdaptError(f"Unsupported CLIP text pooling {model.text_pool_type!r} (need argmax or eos).")

    def _encode_batch(self, texts: list[str]) -> TextFeatures:
        model = self.model
        ids = self.tokenizer(texts, context_length=self.max_length).to(self.device)
        if ids.shape[1] < self.context_length:
            # The model was trained at its full context length: pad the rest with the pad id (0).
            ids = torch.nn.functional.pad(ids, (0, self.context_length - ids.shape[1]))
        if model.text_pool_type == "argmax":
            eot = ids.argmax(dim=-1)  # the EOT id is the largest in the vocabulary
        else:
            eot = (ids == model.text_eos_id).int().argmax(dim=-1)
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(ids).to(cast_dtype) + model.positional_embedding.to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        rows = torch.arange(x.shape[0], device=x.device)
        pooled = x[rows, eot]
        proj = model.text_projection
        if isinstance(proj, nn.Linear):
            pooled = proj(pooled)
        elif proj is not None:
            pooled = pooled @ proj
        length = int(eot.max()) + 1
        positions = torch.arange(length, device=x.device)
        mask = positions.unsqueeze(0) <= eot.unsqueeze(1)
        tokens = x[:, :length] * mask.unsqueeze(-1)
        return TextFeatures(tokens=tokens, mask=mask, pooled=pooled)
