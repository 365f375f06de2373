"""SamAdaptModule: the one LightningModule for every method (shared step, losses, metrics, logging)."""

import logging
import math
import random
import time
from contextlib import ExitStack
from typing import Any, Literal

import lightning as L
import torch

from samadapt.ema import EMA
from samadapt.errors import SamAdaptError
from samadapt.losses import SegmentationLoss
from samadapt.metrics import ReferringMetrics
from samadapt.model import SamAdaptModel, parse_prompt_kinds

log = logging.getLogger(__name__)


def warn_unseen_eval_prompts(train_prompts: dict[str, float], eval_names: list[str]) -> list[str]:
    """Log a warning for each evaluation prompt combination that training never draws; return them.

    Robustness depends on the train-test prompt consistency (CLIP-Guided SAM): a model trained with text plus
    points and evaluated with text alone is a different experiment, and should say so.
    """
    seen = {parse_prompt_kinds(name) for name, weight in train_prompts.items() if weight > 0}
    unseen = [name for name in eval_names if parse_prompt_kinds(name) not in seen]
    for name in unseen:
        log.warning("evaluating with prompts %r, never used in training (train_prompts: %s); expect lower scores "
                    "than with a prompt combination the model was trained on", name, sorted(train_prompts))
    return unseen


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
        train_image_encoder: bool = False,
        train_text_encoder: bool = False,
        embedding_cache_mb: float = 0.0,
        train_prompts: dict[str, float] | None = None,
        eval_prompts: str | list[str] = "text",
        loss_weights: dict[str, float] | None = None,
        optimizer: Literal["adamw", "adam"] = "adamw",
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        scheduler: Literal["none", "cosine"] = "none",
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        ema_decay: float | None = None,
        threshold: float = 0.5,
        strict_pk: bool = True,
    ) -> None:
        """
        Args:
            method: a name from samadapt.methods.METHODS; `method_options` are its constructor arguments.
            sam_variant / sam_checkpoint / image_size: the frozen SAM (official-format checkpoint file).
            text_encoder: "bert", "clip" or None; `text_options` go to its constructor.
            train_image_encoder / train_text_encoder: also fine-tune SAM's image encoder / the text encoder.
            embedding_cache_mb: reuse image embeddings (at most this many MB) when the method leaves the image
                encoder frozen and unconditioned; samples with random pixels (colour jitter) are never cached.
            train_prompts: prompt mix for training, {"text": 1.0} or {"points": 0.3, "box": 0.3, "text": 0.4};
                every sample draws one combination with these weights.
            eval_prompts: the combination used in validation and test, or a list of them: each is evaluated
                (logged as val/<combination>/oIoU) and the first one is also logged as val/oIoU.
            loss_weights: terms of the loss, default {"bce": 1, "dice": 1, "iou": 1} (iou trains the IoU head).
            optimizer, lr, betas, weight_decay: Adam(W) over the trainable parameters only.
            scheduler, warmup_steps / warmup_epochs: linear warm-up, then constant or cosine to zero.
            ema_decay: keep an EMA of the trainable weights and evaluate with it (DIT: 0.999 or so).
            threshold: probability above which a pixel is foreground (DIT evaluates at 0.35).
            strict_pk: P@k counts IoU > k (published DIT code) or >= k (LAVT) when False.
        """
        super().__init__()
        self.save_hyperparameters()
        self.model = SamAdaptModel(
            sam_variant, sam_checkpoint, image_size, method, method_options, text_encoder, text_options,
            train_image_encoder, train_text_encoder, embedding_cache_mb,
        )
        names = [eval_prompts] if isinstance(eval_prompts, str) else list(eval_prompts)
        if not names:
            raise SamAdaptError("eval_prompts is empty; give at least one prompt combination, e.g. text")
        self.eval_kinds = {name: parse_prompt_kinds(name) for name in names}
        self.train_prompts = {k: float(v) for k, v in (train_prompts or {names[0]: 1.0}).items()}
        self.train_kinds = {k: parse_prompt_kinds(k) for k in self.train_prompts}
        if any(w < 0 for w in self.train_prompts.values()) or sum(self.train_prompts.values()) <= 0:
            raise SamAdaptError(f"train_prompts weights must be >= 0 with a positive sum, got {self.train_prompts}")
        warn_unseen_eval_prompts(self.train_prompts, names)
        self.loss = SegmentationLoss(loss_weights or {"bce": 1.0, "dice": 1.0, "iou": 1.0})
        self.val_metrics = self._metrics()
        self.test_metrics = torch.nn.ModuleList()
        self.test_pooled = self._metrics()  # every test split together
        self.test_split_names: list[str] = []
        self.ema = EMA(self.model, ema_decay) if ema_decay else None
        self._ema_scope = ExitStack()
        self._prompt_rng = random.Random(0)

    def _metrics(self) -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({name: ReferringMetrics(strict=self.hparams.strict_pk) for name in self.eval_kinds})

    # ---- parameters and checkpoints ----------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        return {
            "trainable_params": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "total_params": sum(p.numel() for p in self.parameters()),
        }

    def on_fit_start(self) -> None:
        counts = self.parameter_counts()
        assert counts["trainable_params"] == self.model.trainable_count, (counts, self.model.trainable)
        for logger in self.loggers:
            logger.log_hyperparams({**counts, "trainable_modules": self.model.trainable})
        self._prompt_rng = random.Random(self.trainer.global_rank + 1000 * (self.trainer.current_epoch + 1))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The frozen base is rebuilt from hparams["sam_checkpoint"]; keep megabytes, not the whole SAM.
        keep = {"model." + k for k in self.model.trainable_state_dict()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        expected = {"model." + k for k in self.model.trainable_state_dict()}
        missing = expected - set(checkpoint["state_dict"])
        if missing:
            raise SamAdaptError(f"checkpoint lacks {len(missing)} trainable weights, e.g. {sorted(missing)[0]}; "
                                "it was made by another method or configuration")
        # The frozen weights were just rebuilt from the SAM and text checkpoints: complete the dict with them
        # so the load stays strict about everything the checkpoint does carry.
        for key, value in self.state_dict().items():
            checkpoint["state_dict"].setdefault(key, value)
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    # ---- steps -------------------------------------------------------------------------------
    def forward(self, batch: dict, prompts: str | None = None):
        kinds = self.eval_kinds[prompts or next(iter(self.eval_kinds))]
        return self.model(batch, [kinds] * len(batch["text"]))

    def _draw_train_kinds(self, count: int) -> list[frozenset[str]]:
        names = list(self.train_prompts)
        chosen = self._prompt_rng.choices(names, weights=[self.train_prompts[n] for n in names], k=count)
        return [self.train_kinds[name] for name in chosen]

    def step_loss(self, batch: dict, prompt_kinds: list[frozenset[str]]) -> tuple[torch.Tensor, dict]:
        """Total loss and its parts for one batch, sample i prompted with prompt_kinds[i]."""
        low_res, iou_pred = self.model(batch, prompt_kinds)
        return self.loss(self.model.upsample(low_res), batch["mask"], iou_pred)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        start = time.perf_counter()
        loss, parts = self.step_loss(batch, self._draw_train_kinds(len(batch["text"])))
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        self.log("train/step_seconds", time.perf_counter() - start, batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update()

    def predict_masks(self, batch: dict, prompts: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (B,1,S,S) in the letterboxed frame and a boolean map of the valid (unpadded) area."""
        low_res, _ = self(batch, prompts)
        probs = self.model.upsample(low_res).sigmoid()
        size = probs.shape[-1]
        valid = torch.zeros_like(probs, dtype=torch.bool)
        for i, (h, w) in enumerate(batch["orig_size"].tolist()):
            scale = size / max(h, w)
            valid[i, :, : int(h * scale + 0.5), : int(w * scale + 0.5)] = True
        return probs, valid

    def _evaluate(self, batch: dict, *metric_sets: torch.nn.ModuleDict) -> None:
        target = batch["mask"] > 0.5
        for name in self.eval_kinds:
            probs, valid = self.predict_masks(batch, name)
            pred = (probs > self.hparams.threshold) & valid
            for metrics in metric_sets:
                metrics[name].update(pred[:, 0], (target & valid)[:, 0])

    def _log_metrics(self, prefix: str, metrics: torch.nn.ModuleDict) -> None:
        for i, (name, metric) in enumerate(metrics.items()):
            values = metric.compute()
            if i == 0:  # the first prompt combination is the headline number (and what checkpoints monitor)
                self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, add_dataloader_idx=False)
            if len(metrics) > 1:
                self.log_dict({f"{prefix}/{name}/{k}": v for k, v in values.items()}, add_dataloader_idx=False)
            metric.reset()

    def _use_ema_weights(self) -> None:
        """Evaluate with the EMA weights until the epoch's end hook closes the scope (no-op without EMA)."""
        if self.ema is not None:
            self._ema_scope.enter_context(self.ema.applied())

    def on_validation_epoch_start(self) -> None:
        self._use_ema_weights()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)
        self._ema_scope.close()

    def on_test_epoch_start(self) -> None:
        names = list(getattr(self.trainer.datamodule, "test_split_names", None) or ["test"])
        if len(names) != len(self.test_metrics) or names != self.test_split_names:
            self.test_split_names = names
            self.test_metrics = torch.nn.ModuleList([self._metrics() for _ in names]).to(self.device)
        self._use_ema_weights()

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_metrics[dataloader_idx], self.test_pooled)

    def on_test_epoch_end(self) -> None:
        for name, metrics in zip(self.test_split_names, self.test_metrics, strict=True):
            self._log_metrics(f"test/{name}", metrics)
        self._log_metrics("test", self.test_pooled)
        self._ema_scope.close()

    def on_predict_epoch_start(self) -> None:
        self._use_ema_weights()

    def on_predict_epoch_end(self) -> None:
        self._ema_scope.close()

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        probs, valid = self.predict_masks(batch)
        return {"sample_id": batch["sample_id"], "probs": probs, "mask": (probs > self.hparams.threshold) & valid}

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise SamAdaptError(f"method {self.hparams.method!r} trains nothing: evaluate it with "
                                "`samadapt validate` or `samadapt test` (no fit, no checkpoint needed)")
        hp = self.hparams
        optimizer_class = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        if hp.scheduler == "none" and not hp.warmup_steps and not hp.warmup_epochs:
            return optimizer
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = hp.warmup_steps
        if hp.warmup_epochs:
            epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
            warmup = int(hp.warmup_epochs * total / epochs)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if hp.scheduler == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
