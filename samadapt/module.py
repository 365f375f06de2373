"""SamAdaptModule: the one LightningModule for every method (shared step, losses, metrics, logging)."""

import random
import time
from typing import Any, Literal

import lightning as L
import torch

from samadapt.losses import SegmentationLoss
from samadapt.metrics import ReferringMetrics
from samadapt.model import SamAdaptModel, parse_prompt_kinds


class SamAdaptModule(L.LightningModule):
    def __init__(
        self,
        method: str = "decoder_only",
        method_options: dict[str, Any] | None = None,
        sam_variant: str = "vit_b",
        sam_checkpoint: str | None = None,
        image_size: int | None = None,
        text_encoder: str | None = None,
        text_options: dict[str, Any] | None = None,
        train_prompts: dict[str, float] | None = None,
        eval_prompts: str = "text",
        loss_weights: dict[str, float] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        scheduler: Literal["none", "cosine"] = "none",
        warmup_steps: int = 0,
        threshold: float = 0.5,
        strict_pk: bool = True,
    ) -> None:
        """
        Args:
            method: a name from samadapt.methods.METHODS; `method_options` are its constructor arguments.
            sam_variant / sam_checkpoint / image_size: the frozen SAM (official-format checkpoint file).
            text_encoder: "bert", "clip" or None; `text_options` go to its constructor.
            train_prompts: prompt mix for training, {"text": 1.0} or {"points+text": 0.5, "box": 0.5};
                one combination is drawn per batch with these weights.
            eval_prompts: the prompt combination used in validation and test.
            loss_weights: terms of the loss, default {"bce": 1, "dice": 1, "iou": 1} (iou trains the IoU head).
            threshold: probability above which a pixel is foreground (DIT evaluates at 0.35).
            strict_pk: P@k counts IoU > k (published DIT code) or >= k (LAVT) when False.
        """
        super().__init__()
        self.save_hyperparameters()
        self.model = SamAdaptModel(
            sam_variant, sam_checkpoint, image_size, method, method_options, text_encoder, text_options
        )
        self.train_prompts = {k: float(v) for k, v in (train_prompts or {eval_prompts: 1.0}).items()}
        self.train_kinds = {k: parse_prompt_kinds(k) for k in self.train_prompts}
        self.eval_kinds = parse_prompt_kinds(eval_prompts)
        self.loss = SegmentationLoss(loss_weights or {"bce": 1.0, "dice": 1.0, "iou": 1.0})
        self.val_metrics = ReferringMetrics(strict=strict_pk)
        self.test_metrics = torch.nn.ModuleList()
        self.test_pooled = ReferringMetrics(strict=strict_pk)  # every test split together
        self.test_split_names: list[str] = []
        self._prompt_rng = random.Random(0)

    # ---- parameters and checkpoints ----------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        return {
            "trainable_params": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "total_params": sum(p.numel() for p in self.parameters()),
        }

    def on_fit_start(self) -> None:
        counts = self.parameter_counts()
        declared = sum(self.model.trainable.values())
        assert counts["trainable_params"] == declared, (counts, self.model.trainable)
        for logger in self.loggers:
            logger.log_hyperparams({**counts, "trainable_modules": self.model.trainable})
        self._prompt_rng = random.Random(self.trainer.global_rank + 1000 * (self.trainer.current_epoch + 1))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The frozen base is rebuilt from hparams["sam_checkpoint"]; keep megabytes, not the whole SAM.
        keep = {"model." + k for k in self.model.trainable_state_dict()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        expected = {"model." + k for k in self.model.trainable_state_dict()}
        missing = expected - set(checkpoint["state_dict"])
        if missing:
            from samadapt.errors import SamAdaptError

            raise SamAdaptError(f"checkpoint lacks {len(missing)} trainable weights, e.g. {sorted(missing)[0]}; "
                                "it was made by another method or configuration")
        # The frozen weights were just rebuilt from the SAM and text checkpoints: complete the dict with them
        # so the load stays strict about everything the checkpoint does carry.
        for key, value in self.state_dict().items():
            checkpoint["state_dict"].setdefault(key, value)

    # ---- steps -------------------------------------------------------------------------------
    def forward(self, batch: dict, prompt_kinds: frozenset[str] | None = None):
        return self.model(batch, self.eval_kinds if prompt_kinds is None else prompt_kinds)

    def _draw_train_kinds(self) -> frozenset[str]:
        names = list(self.train_prompts)
        choice = self._prompt_rng.choices(names, weights=[self.train_prompts[n] for n in names])[0]
        return self.train_kinds[choice]

    def step_loss(self, batch: dict, prompt_kinds: frozenset[str]) -> tuple[torch.Tensor, dict]:
        """Total loss and its parts for one batch under the given prompt kinds."""
        low_res, iou_pred = self.model(batch, prompt_kinds)
        return self.loss(self.model.upsample(low_res), batch["mask"], iou_pred)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        start = time.perf_counter()
        loss, parts = self.step_loss(batch, self._draw_train_kinds())
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        self.log("train/step_seconds", time.perf_counter() - start, batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        return loss

    def predict_masks(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (B,1,S,S) in the letterboxed frame and a boolean map of the valid (unpadded) area."""
        low_res, _ = self(batch)
        probs = self.model.upsample(low_res).sigmoid()
        size = probs.shape[-1]
        valid = torch.zeros_like(probs, dtype=torch.bool)
        for i, (h, w) in enumerate(batch["orig_size"].tolist()):
            scale = size / max(h, w)
            valid[i, :, : int(h * scale + 0.5), : int(w * scale + 0.5)] = True
        return probs, valid

    def _evaluate(self, batch: dict, *metrics: ReferringMetrics) -> None:
        probs, valid = self.predict_masks(batch)
        pred = (probs > self.hparams.threshold) & valid
        target = (batch["mask"] > 0.5) & valid
        for metric in metrics:
            metric.update(pred[:, 0], target[:, 0])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self.log_dict({f"val/{k}": v for k, v in self.val_metrics.compute().items()}, prog_bar=False)
        self.val_metrics.reset()

    def on_test_start(self) -> None:
        names = list(getattr(self.trainer.datamodule, "test_split_names", None) or ["test"])
        if len(names) != len(self.test_metrics) or names != self.test_split_names:
            self.test_split_names = names
            self.test_metrics = torch.nn.ModuleList(
                [ReferringMetrics(strict=self.hparams.strict_pk) for _ in names]
            ).to(self.device)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_metrics[dataloader_idx], self.test_pooled)

    def on_test_epoch_end(self) -> None:
        for name, metric in zip(self.test_split_names, self.test_metrics, strict=True):
            self.log_dict({f"test/{name}/{k}": v for k, v in metric.compute().items()}, add_dataloader_idx=False)
            metric.reset()
        self.log_dict({f"test/{k}": v for k, v in self.test_pooled.compute().items()}, add_dataloader_idx=False)
        self.test_pooled.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        probs, valid = self.predict_masks(batch)
        return {"sample_id": batch["sample_id"], "probs": probs, "mask": (probs > self.hparams.threshold) & valid}

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none" and not self.hparams.warmup_steps:
            return optimizer
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = self.hparams.warmup_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if self.hparams.scheduler == "cosine":
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item())
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
