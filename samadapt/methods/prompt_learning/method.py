"""Prompt learning on a fully frozen SAM (PLM, optionally with PMM; arXiv 2403.09199).

Nothing of SAM trains, not even the mask decoder: the Prompt Learning Module moves the sparse prompt
embeddings toward what the task means by a point (zero-initialised, so step 0 is frozen SAM), and the
optional Point Matching Module adds a boundary-point loss during training (see pmm.py).
"""

import torch
from segment_anything.modeling import Sam
from torch import nn

from samadapt.methods.base import Method
from samadapt.methods.prompt_learning.boundary import boundary_points, match_cyclic, predicted_boundary
from samadapt.methods.prompt_learning.plm import PromptLearningModule
from samadapt.methods.prompt_learning.pmm import PointMatchingModule
from samadapt.text import TextEncoder, TextFeatures


class PromptLearning(Method):
    def __init__(
        self,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        num_layers: int = 1,
        dropout: float = 0.0,
        pmm: bool = False,
        pmm_points: int = 64,
        pmm_dim: int = 128,
        pmm_heads: int = 4,
        pmm_mlp_dim: int = 512,
        pmm_encoder_layers: int = 3,
        pmm_decoder_layers: int = 2,
    ) -> None:
        """Defaults give the paper's sizes at ViT-B (256-wide prompts): PLM 1.64M, PMM 1.19M parameters."""
        super().__init__()
        self.plm_options = dict(num_heads=num_heads, mlp_dim=mlp_dim, num_layers=num_layers, dropout=dropout)
        self.pmm_options = dict(dim=pmm_dim, num_heads=pmm_heads, mlp_dim=pmm_mlp_dim,
                                encoder_layers=pmm_encoder_layers, decoder_layers=pmm_decoder_layers)
        self.use_pmm, self.pmm_points = pmm, pmm_points
        self.auxiliary_loss_names = ("pmm",) if pmm else ()

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        dim = sam.prompt_encoder.embed_dim
        self.plm = PromptLearningModule(dim, **self.plm_options)
        self.pmm = None
        if self.use_pmm:
            upscaled_dim = sam.mask_decoder.output_upscaling[-2].out_channels  # transformer_dim // 8
            self.pmm = PointMatchingModule(dim, upscaled_dim, **self.pmm_options)
            sam.mask_decoder.output_upscaling.register_forward_hook(self._record_upscaled)

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        return {"method": self}

    def prompt_embeddings(self, sam: Sam, sparse, dense, text: TextFeatures | None, image_embedding):
        if self.pmm is not None and self.training:
            self.context.recorded.setdefault("pmm_images", []).append(image_embedding)
        if sparse.shape[1] == 0:  # no sparse prompt to adjust
            return sparse, dense
        pe = sam.prompt_encoder.get_dense_pe()
        return sparse + self.plm(sparse, image_embedding + dense, pe).to(sparse.dtype), dense

    def _record_upscaled(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        """The mask decoder's upscaled embedding of each decoded sample, in batch order (training only)."""
        if self.training:
            self.context.recorded.setdefault("pmm_upscaled", []).append(output)

    def auxiliary_losses(self, sam: Sam, batch: dict, low_res_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean distance (in units of the image side) between PMM's refined points and the matched GT points."""
        upscaled = self.context.recorded.get("pmm_upscaled", [])
        images = self.context.recorded.get("pmm_images", [])
        if self.pmm is None or len(upscaled) != len(low_res_logits) or len(images) != len(low_res_logits):
            return {}
        keep, predicted, targets = [], [], []
        for i, logits in enumerate(low_res_logits):
            gt = boundary_points(batch["mask"][i, 0].detach().cpu().numpy() > 0.5, self.pmm_points)
            if gt is None:  # an empty target has no boundary
                continue
            points = torch.from_numpy(predicted_boundary(logits[0].detach(), self.pmm_points))
            keep.append(i)
            predicted.append(points)
            targets.append(match_cyclic(points, torch.from_numpy(gt)))
        if not keep:
            return {}
        device = low_res_logits.device
        points, target = torch.stack(predicted).to(device), torch.stack(targets).to(device)
        size = sam.image_encoder.img_size
        position = sam.prompt_encoder.pe_layer.forward_with_coords(points * size, (size, size))
        refined = self.pmm(points, position, torch.cat([upscaled[i] for i in keep]),
                           torch.cat([images[i] for i in keep]), low_res_logits[keep])
        return {"pmm": ((refined - target).pow(2).sum(-1) + 1e-12).sqrt().mean()}
