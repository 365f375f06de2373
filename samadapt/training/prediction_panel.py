"""Every N validations, a panel of predictions in W&B: each image with its ground truth and predicted masks
(toggled on the dashboard as `wandb.Image` masks), the points and box drawn on it and the text as its caption."""

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from PIL import Image, ImageDraw

from samadapt.sam.preprocess import content_boxes, crop_content

POINT_COLOURS = {1: (0, 230, 0), 0: (255, 40, 40)}  # foreground green, background red
BOX_COLOUR = (255, 210, 0)


def first_samples(batch: dict, count: int) -> dict:
    """The first `count` samples of a collated batch (tensors and lists sliced alike)."""
    return {k: v[:count] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}


def draw_prompts(image: np.ndarray, kinds: frozenset[str], points, labels, box) -> np.ndarray:
    """The image (HxWx3 uint8) with the spatial prompts the model saw drawn on it."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    radius = max(2, min(image.shape[:2]) // 40)
    if "points" in kinds:
        for (x, y), label in zip(points.tolist(), labels.tolist(), strict=True):
            if label in POINT_COLOURS:  # -1 is collate padding
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=(255, 255, 255),
                             fill=POINT_COLOURS[label])
    if "box" in kinds:
        draw.rectangle([float(v) for v in box.tolist()], outline=BOX_COLOUR, width=max(1, radius // 2))
    return np.asarray(canvas)


class PredictionPanel(Callback):
    def __init__(self, every_n_validations: int = 5, num_samples: int = 4, key: str = "val/predictions") -> None:
        """
        Args:
            every_n_validations: log at the 1st validation, then every N-th (sanity checks do not count).
            num_samples: images in the panel, taken from the first validation batch.
            key: the W&B media key.
        """
        if every_n_validations < 1 or num_samples < 1:
            raise ValueError("every_n_validations and num_samples must be >= 1")
        self.every, self.num_samples, self.key = every_n_validations, num_samples, key
        self.validations = 0

    def _due(self, trainer: Trainer) -> bool:
        return not trainer.sanity_checking and self.validations % self.every == 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if batch_idx != 0 or dataloader_idx != 0 or not loggers or not self._due(trainer):
            return
        images, masks, captions = self.panel(pl_module, first_samples(batch, self.num_samples))
        for logger in loggers:
            logger.log_image(self.key, images, step=trainer.global_step, masks=masks, caption=captions)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations += 1

    @torch.no_grad()
    def panel(self, pl_module: LightningModule, batch: dict) -> tuple[list, list, list]:
        """Images with prompts drawn, their {ground_truth, prediction} masks and captions, cropped to content."""
        combo = next(iter(pl_module.eval_kinds))
        kinds = pl_module.eval_kinds[combo]
        probs, _ = pl_module.predict_masks(batch, combo)
        preds = (probs[:, 0] > pl_module.hparams.threshold).cpu().numpy()
        boxes = content_boxes(batch, batch["image"].shape[-1], pl_module.model.letterbox).tolist()
        images, masks, captions = [], [], []
        for i, box in enumerate(boxes):
            image = crop_content(batch["image"][i], box).permute(1, 2, 0).clamp(0, 255).byte().cpu().numpy()
            shift = torch.tensor(box[1::-1], dtype=torch.float32)  # prompts are in the frame: move them to the crop
            images.append(draw_prompts(image, kinds, batch["points"][i].cpu() - shift, batch["point_labels"][i].cpu(),
                                       batch["box"][i].cpu() - shift.repeat(2)))
            gt = crop_content(batch["mask"][i, 0], box).cpu().numpy() > 0.5
            pred = crop_content(preds[i], box)
            masks.append({"ground_truth": {"mask_data": gt.astype(np.uint8), "class_labels": {1: "ground truth"}},
                          "prediction": {"mask_data": pred.astype(np.uint8), "class_labels": {1: "prediction"}}})
            iou = (gt & pred).sum() / max(1, (gt | pred).sum())
            text = f'"{batch["text"][i]}" ' if "text" in kinds else ""
            captions.append(f"{text}[{combo}] IoU {iou:.2f}")
        return images, masks, captions
