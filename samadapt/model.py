"""SamAdaptModel: a frozen SAM, a frozen text encoder and one method's trainable parts, as one nn.Module."""

import inspect
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from samadapt.embedding_cache import EmbeddingCache, encoder_fingerprint
from samadapt.errors import SamAdaptError
from samadapt.methods import build_method
from samadapt.sam import build_sam
from samadapt.sam.activation_checkpointing import checkpoint_encoder_blocks
from samadapt.sam.loop import decode, embed_prompts
from samadapt.sam.preprocess import Letterbox, content_boxes, fill_padding
from samadapt.sam.prompt_checks import check_prompts
from samadapt.text import TextFeatures, build_text_encoder

SPATIAL_PROMPTS = ("points", "box")
PROMPT_KINDS = (*SPATIAL_PROMPTS, "text")
PromptKinds = frozenset[str]


def parse_prompt_kinds(combo: str) -> PromptKinds:
    """'points+text' -> {'points', 'text'}; 'none' -> {} (no prompt at all)."""
    kinds = frozenset() if combo == "none" else frozenset(combo.split("+"))
    unknown = kinds - set(PROMPT_KINDS)
    if unknown:
        raise SamAdaptError(
            f"unknown prompt kind(s) {sorted(unknown)} in {combo!r}; "
            f"combine {', '.join(PROMPT_KINDS)} with + or use none"
        )
    return kinds


def model_defaults() -> dict[str, Any]:
    """SamAdaptModel's arguments and their defaults."""
    return {name: p.default for name, p in inspect.signature(SamAdaptModel).parameters.items()}


class SamAdaptModel(nn.Module):
    def __init__(
        self,
        *,
        method: str = "decoder_only",
        method_options: dict[str, Any] | None = None,
        sam_variant: str = "vit_b",
        sam_checkpoint: str | None = None,
        image_size: int | None = None,
        letterbox: Letterbox = "top_left",
        text_encoder: str | None = None,
        text_options: dict[str, Any] | None = None,
        train_image_encoder: bool = False,
        train_text_encoder: bool = False,
        embedding_cache_mb: float = 0.0,
        embedding_cache_dir: str | None = None,
        embedding_cache_disk_mb: float = 10240.0,
        fused_attention: bool = True,
        activation_checkpointing: bool | Literal["full", "selective"] = False,
        compile: bool = False,
    ) -> None:
        """
        Args:
            method: a name from samadapt.methods.METHODS; `method_options` are its constructor arguments.
            sam_variant / sam_checkpoint / image_size: the frozen SAM (official-format checkpoint file).
            letterbox: where the image sits in the square input: top_left (SAM) or center (the released DIT code);
                the data follows it, and the predictor places images as the run was trained.
            text_encoder: "bert", "clip" or None; `text_options` go to its constructor.
            train_image_encoder / train_text_encoder: also fine-tune SAM's image encoder / the text encoder.
            embedding_cache_mb: reuse image embeddings (at most this many MB) when the method leaves the image
                encoder frozen and unconditioned; samples with random pixels (colour jitter) are never cached.
            embedding_cache_dir / embedding_cache_disk_mb: also keep them on disk (at most this many MB), where
                later runs with the same SAM weights find them.
            fused_attention: SAM's encoder attention through scaled_dot_product_attention (same weights, same
                outputs up to float rounding, faster); false runs the official code.
            activation_checkpointing: recompute each encoder block in backward instead of keeping its
                activations (less memory, more time; matters only when gradients flow through the encoder).
                true or "full": keep only each block's input; "selective": also keep its qkv projection and
                attention output, recompute the MLP and the elementwise work (most of the memory saving for
                a third of the extra time).
            compile: torch.compile the image encoder (needs a C++ compiler on the CPU; the first steps are slow).
        """
        super().__init__()
        # fused attention: the same weights and names, attention through SDPA (see sam/fused_attention.py)
        self.sam = build_sam(sam_variant, sam_checkpoint, image_size, frozen=True, fused_attention=fused_attention)
        self.letterbox = letterbox
        self.text_encoder = build_text_encoder(text_encoder, **(text_options or {})) if text_encoder else None
        self.method = build_method(method, method_options)
        if self.method.uses_text and self.text_encoder is None:
            raise SamAdaptError(f"method {method!r} reads text: set model.text_encoder (bert or clip)")
        if train_text_encoder and self.text_encoder is None:
            raise SamAdaptError("train_text_encoder needs a text encoder: set model.text_encoder")
        self.method.attach(self.sam, self.text_encoder)
        if activation_checkpointing:  # after attach: the method's wrapped blocks are what gets checkpointed
            mode = "full" if activation_checkpointing is True else activation_checkpointing
            checkpoint_encoder_blocks(self.sam.image_encoder, mode)
        if compile:  # in place: parameter names and state dicts stay as they are
            self.sam.image_encoder.compile()
        extra = {}
        if train_image_encoder:  # the paper-style unfrozen backbone, on top of whatever the method trains
            extra["sam.image_encoder"] = self.sam.image_encoder
        if train_text_encoder:
            self.text_encoder.make_trainable()
            extra["text_encoder"] = self.text_encoder
        self.trainable, self.trainable_count = self._mark_trainable(extra)
        # Reusing embeddings is exact only when nothing trainable or text-dependent runs in the encoder.
        cacheable = not self.method.conditions_encoder and not train_image_encoder
        # Such an encoder reads one image per call, cache or no cache: an image's embedding then never depends on
        # the batch it came in (its last bits do otherwise), so the cache changes no result and a resumed run
        # (cold cache) repeats an uninterrupted one bit for bit (samadapt/embedding_cache.py, EmbeddingCache.encode).
        self.encodes_alone = cacheable
        self.embedding_cache = None
        if cacheable and (embedding_cache_mb > 0 or embedding_cache_dir):
            fingerprint = ""
            if embedding_cache_dir:  # files outlive this SAM: file them under its weights' hash
                # "pad=mean": entries made before padding followed SAM (black padding) are never served
                preprocessing = f"{self.sam.pixel_mean}{self.sam.pixel_std}pad=mean"
                fingerprint = encoder_fingerprint(self.sam.image_encoder, preprocessing)
            self.embedding_cache = EmbeddingCache(embedding_cache_mb, embedding_cache_dir, embedding_cache_disk_mb,
                                                  fingerprint)

    @property
    def image_size(self) -> int:
        return self.sam.image_encoder.img_size

    def _mark_trainable(self, extra: dict[str, nn.Module]) -> tuple[dict[str, int], int]:
        """Freeze all, unfreeze what the method (and the backbone options) declare, check exactly that trains."""
        self.requires_grad_(False)
        declared = {**self.method.trainable_modules(self.sam), **extra}
        for module in declared.values():
            module.requires_grad_(True)
        wanted = {id(p): p.numel() for m in declared.values() for p in m.parameters()}
        training = {id(p) for p in self.parameters() if p.requires_grad}
        if set(wanted) != training:  # a wrapper that re-enabled a frozen weight, or an undeclared layer
            raise RuntimeError("trainable parameters differ from what the method declares")
        if not wanted and self.method.needs_training:
            raise SamAdaptError(f"method {type(self.method).__name__} declares nothing to train")
        per_part = {name: sum(p.numel() for p in m.parameters()) for name, m in declared.items()}
        return per_part, sum(wanted.values())

    def encode_text(self, texts: list[str]) -> TextFeatures | None:
        if not self.method.uses_text or self.text_encoder is None:
            return None
        return self.text_encoder(texts)

    def prepare_images(self, images: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """Letterboxed uint8 frames -> float 0..255 with the padding at SAM's pixel mean (0 once normalised);
        `content`: (B, 4) content boxes (top, left, h, w), or (B, 2) sizes (h, w) of content at the top left."""
        return fill_padding(images.float(), content, self.sam.pixel_mean)

    def forward(self, batch: dict, prompt_kinds: list[PromptKinds], auxiliary_losses: bool = False):
        """Low-res mask logits (B,1,4h,4w) and predicted IoU (B,1); sample i is prompted with prompt_kinds[i].

        With `auxiliary_losses` (training) a third item: the method's extra loss terms of this forward.
        """
        with self.method.forward_context(image_keys=batch.get("image_key")):
            low_res, iou = self._segment(batch, prompt_kinds)
            if not auxiliary_losses:
                return low_res, iou
            return low_res, iou, self.method.auxiliary_losses(self.sam, batch, low_res)

    def _segment(self, batch: dict, prompt_kinds: list[PromptKinds]) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.prepare_images(batch["image"], content_boxes(batch, self.image_size, self.letterbox))
        with_text = torch.tensor(["text" in kinds for kinds in prompt_kinds])
        check_prompts(batch, self.image_size, prompt_kinds)
        text = self.encode_text(batch["text"]) if with_text.any() else None
        if text is not None and not with_text.all():  # samples prompted without text see no text tokens
            text = TextFeatures(text.tokens, text.mask & with_text.to(text.mask.device)[:, None], text.pooled)
        if self.encodes_alone:
            with torch.no_grad():  # the encoder is frozen and unconditioned: no gradient goes there
                def encode_each(many: torch.Tensor) -> torch.Tensor:
                    return torch.cat([self.method.encode(self.sam, many[i : i + 1], None) for i in range(len(many))])

                if self.embedding_cache is not None and "image_key" in batch:
                    embeddings = self.embedding_cache.encode(batch["image_key"], images, encode_each)
                else:
                    embeddings = encode_each(images)
        else:
            embeddings = self.method.encode(self.sam, images, text)
        return self.decode_prompts(embeddings, batch, text, prompt_kinds)

    def decode_prompts(
        self, embeddings: torch.Tensor, batch: dict, text: TextFeatures | None, prompt_kinds: list[PromptKinds],
        *, masks: torch.Tensor | None = None, multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode sample i's prompts (prompt_kinds[i] of the batch's points, box and text) on embeddings[i].

        `masks` (B,1,4h,4w): previous low-res logits as SAM's dense mask prompt (SamPredictor's mask_input);
        `multimask_output`: SAM's three masks per sample instead of one."""
        logits, ious = [], []
        for i, kinds in enumerate(prompt_kinds):
            sparse, dense = embed_prompts(
                self.sam,
                batch["points"][i] if "points" in kinds else None,
                batch["point_labels"][i] if "points" in kinds else None,
                batch["box"][i] if "box" in kinds else None,
                mask=None if masks is None else masks[i],
            )
            sample_text = None
            if text is not None and "text" in kinds:
                keep = text.mask[i]
                sample_text = TextFeatures(text.tokens[i : i + 1, keep], keep[keep][None], text.pooled[i : i + 1])
            sparse, dense = self.method.prompt_embeddings(self.sam, sparse, dense, sample_text, embeddings[i : i + 1])
            low_res, iou = decode(self.sam, embeddings[i : i + 1], sparse, dense, multimask_output=multimask_output)
            logits.append(low_res)
            ious.append(iou)
        return torch.cat(logits), torch.cat(ious)

    def upsample(self, low_res_logits: torch.Tensor) -> torch.Tensor:
        """Low-res logits -> logits at the model's input size (letterboxed frame), as SAM postprocesses."""
        size = self.image_size
        return F.interpolate(low_res_logits, (size, size), mode="bilinear", align_corners=False)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}
