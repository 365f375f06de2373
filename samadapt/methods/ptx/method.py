"""SU-SAM's parallel adapter (baseline) and SAM-PTx's parallel-text adapter (arXiv 2508.00213).

parallel_adapter: in every chosen encoder block, a bottleneck up(act(down(x))) * scale runs parallel to the MLP
(placement "mlp") or to both the MLP and the attention ("mlp+mhsa"); `up` starts at zero.
sam_ptx: the same adapters, and the frozen pooled text embedding t of the class prompt (CLIP ViT-B/32 in the
paper) reaches SAM at one place, `inject`:
  encoder (the paper's method): inside the adapters listed in `text_into` (default the MLP-parallel ones only),
      each adapter's own act(W_t t) (or one shared W_t: text_projection "shared") is added to every token of
      its input before the bottleneck;
  prompt:  act(W_t t), projected to the prompt width, is a sparse prompt token: it fills the empty
      "not a point" slot SAM appends to point-only prompts (appended as a new token when there is no slot);
  decoder: act(W_t t), projected to the decoder width, is added to every image token the mask decoder reads
      (SAM's dense prompt embedding, which the decoder adds to the image embedding).
With prompt/decoder injection the encoder adapters stay text-free. W_t is zero-initialised there, so every
variant starts as frozen SAM (except a text token appended after a box prompt, which has no empty slot).
Trained: the adapters (+ text projections) and SAM's mask decoder.
"""

from typing import Any, Literal

import torch
from segment_anything.modeling import Sam
from torch import nn

from samadapt.errors import SamAdaptError
from samadapt.methods.base import Method
from samadapt.methods.injection import BlockWrapper, wrap_encoder_blocks, wrapper_additions
from samadapt.methods.ptx.layers import ACTIVATIONS, ParallelBranch, TextProjection
from samadapt.text import TextEncoder, TextFeatures

PLACEMENTS = ("mlp", "mlp+mhsa")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SamAdaptError(f"{name} must be one of {list(choices)}, got {value!r}")


class ParallelAdapter(Method):
    conditions_encoder = True  # trainable adapters run inside the encoder: no embedding cache

    def __init__(
        self,
        blocks: Literal["all"] | list[int] = "all",
        width: int = 64,
        scale: float = 0.1,
        act: Literal["gelu", "relu"] = "gelu",
        placement: Literal["mlp", "mlp+mhsa"] = "mlp",
    ) -> None:
        """blocks: "all" or encoder block indices; width: bottleneck width; scale: multiplies the adapter output."""
        super().__init__()
        _check_choice("placement", placement, PLACEMENTS)
        _check_choice("act", act, tuple(ACTIVATIONS))
        if width < 1:
            raise SamAdaptError(f"adapter width must be >= 1, got {width}")
        if blocks != "all" and (isinstance(blocks, str) or not blocks or len(set(blocks)) != len(blocks)):
            raise SamAdaptError(f"blocks must be 'all' or a non-empty list of distinct block indices, got {blocks!r}")
        self.block_choice, self.width, self.scale, self.act, self.placement = blocks, width, scale, act, placement

    def _text_projection_for(self, branch: str, dim: int) -> TextProjection | None:
        """The act(W_t t) a branch ("mlp" / "mhsa") adds to its input; None for a text-free adapter."""
        return None

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        encoder = sam.image_encoder
        depth, dim = len(encoder.blocks), encoder.patch_embed.proj.out_channels
        indices = list(range(depth)) if self.block_choice == "all" else list(self.block_choice)
        bad = [i for i in indices if not 0 <= i < depth]
        if bad:
            raise SamAdaptError(f"blocks {bad} out of range: this SAM's encoder has blocks 0..{depth - 1}")

        def branch(kind: str) -> ParallelBranch:
            return ParallelBranch(dim, self.width, self.scale, self.act, self._text_projection_for(kind, dim))

        def wrap(i: int, block) -> BlockWrapper:
            attn = branch("mhsa") if self.placement == "mlp+mhsa" else None
            return BlockWrapper(block, self.context, attn_branch=attn, mlp_branch=branch("mlp"))

        wrap_encoder_blocks(encoder, wrap, indices)

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"method": self, "sam.mask_decoder": sam.mask_decoder, **wrapper_additions(sam)}


class SamPtx(ParallelAdapter):
    uses_text = True

    def __init__(
        self,
        text_into: Literal["mlp", "mlp+mhsa"] = "mlp",
        inject: Literal["encoder", "prompt", "decoder"] = "encoder",
        text_projection: Literal["per_adapter", "shared"] = "per_adapter",
        **adapter: Any,
    ) -> None:
        """text_into: which adapters read the text (encoder injection); it needs the same adapters in placement.
        text_projection: each text-reading adapter has its own W_t (default), or one W_t serves them all.
        adapter: the ParallelAdapter options (blocks, width, scale, act, placement), with the same defaults."""
        super().__init__(**adapter)
        act, placement = self.act, self.placement
        _check_choice("text_into", text_into, PLACEMENTS)
        _check_choice("inject", inject, ("encoder", "prompt", "decoder"))
        _check_choice("text_projection", text_projection, ("per_adapter", "shared"))
        if inject != "encoder" and act == "relu":  # relu'(0) = 0: a zero-initialised W_t would never move
            raise SamAdaptError(f"inject {inject} starts W_t at zero and needs act: gelu (relu would never train it)")
        if text_into == "mlp+mhsa" and placement != "mlp+mhsa":
            raise SamAdaptError("text_into mlp+mhsa needs MHSA-parallel adapters: set placement: mlp+mhsa")
        self.text_into, self.inject, self.text_projection = text_into, inject, text_projection
        self.pooled_dim: int | None = None
        self.shared_text_proj: TextProjection | None = None

    def _text_projection_for(self, branch: str, dim: int) -> TextProjection | None:
        if self.inject != "encoder" or (branch == "mhsa" and self.text_into == "mlp"):
            return None
        if self.text_projection == "per_adapter":
            return TextProjection(self.pooled_dim, dim, self.act)
        if self.shared_text_proj is None:  # lives in this method; the branches only point at it
            self.shared_text_proj = TextProjection(self.pooled_dim, dim, self.act)
        return self.shared_text_proj

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        self.pooled_dim = text_encoder.pooled_dim
        super().attach(sam, text_encoder)
        width = sam.prompt_encoder.embed_dim
        self.text_proj = None
        if self.inject != "encoder":
            self.text_proj = TextProjection(self.pooled_dim, width, self.act, zero_init=True)

    def prompt_embeddings(self, sam: Sam, sparse, dense, text: TextFeatures | None, image_embedding):
        if self.text_proj is None or text is None:
            return sparse, dense
        projected = self.text_proj(text, sparse.dtype)  # (1,C)
        if self.inject == "decoder":
            return sparse, dense + projected[:, :, None, None]
        no_point = sam.prompt_encoder.not_a_point_embed.weight.to(sparse.dtype)  # (1,C)
        token = (no_point + projected)[:, None]
        if sparse.shape[1] and torch.equal(sparse[:, -1], no_point):  # SAM's empty slot after point prompts
            return torch.cat([sparse[:, :-1], token], dim=1), dense
        return torch.cat([sparse, token], dim=1), dense
