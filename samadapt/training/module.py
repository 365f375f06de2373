"""SamAdaptModule: the one LightningModule for every method (shared step, losses, metrics, logging)."""

import logging
import random
import time
from contextlib import ExitStack
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from samadapt.embedding_cache import cache_plan
from samadapt.errors import SamAdaptError
from samadapt.evaluation.protocol import (
    RESOLUTIONS,
    EvalMetrics,
    check_family,
    check_threshold,
    eval_samples,
    metrics_for,
    write_report,
)
from samadapt.model import SamAdaptModel, model_defaults, parse_prompt_kinds
from samadapt.sam.preprocess import content_boxes
from samadapt.training.ema import EMA
from samadapt.training.losses import SegmentationLoss
from samadapt.training.optim import LrScaling, configure_optimization, global_batch_accumulation
from samadapt.training.scale import shard_for_full_finetune

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
        *,
        train_prompts: dict[str, float] | None = None,
        eval_prompts: str | list[str] = "text",
        loss_weights: dict[str, float] | None = None,
        optimizer: Literal["adamw", "adam"] = "adamw",
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        scheduler: Literal["none", "cosine"] = "none",
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        warmup_start_lr: float | None = None,
        min_lr: float = 0.0,
        ema_decay: float | None = None,
        ema_warmup: bool = False,
        threshold: float = 0.5,
        threshold_on: Literal["probs", "logits"] = "probs",
        strict_pk: bool = True,
        global_batch_size: int | None = None,
        lr_scaling: LrScaling = "none",
        lr_reference_batch: int | None = None,
        metrics: Literal["auto", "referring", "sod", "semantic"] = "auto",
        eval_resolution: Literal["auto", "original", "original_binary", "model"] = "auto",
        **model_args,
    ) -> None:
        """
        Args:
            train_prompts: prompt mix for training, {"text": 1.0} or {"points": 0.3, "box": 0.3, "text": 0.4};
                every sample draws one combination with these weights.
            eval_prompts: the combination used in validation and test, or a list of them: each is evaluated
                (logged as val/<combination>/oIoU) and the first one is also logged as val/oIoU.
            loss_weights: terms of the loss, default {"bce": 1, "dice": 1, "iou": 1} (iou trains the IoU head);
                SAM's own recipe is {"focal": 20, "dice": 1, "iou": 1}. A method's auxiliary terms (plm with PMM:
                "pmm") are added in training with the weight given here, 1 when not given.
            optimizer, lr, betas, eps, weight_decay: Adam(W) over the trainable parameters only (eps: Adam's
                epsilon; the released DIT code uses 1e-9).
            scheduler, warmup_steps / warmup_epochs: linear warm-up, then constant or cosine to min_lr.
            warmup_start_lr: None: the warm-up factor is (step + 1) / warmup; a value: the warm-up runs linearly
                from this lr at step 0 up to lr (the released DIT code: 1e-7).
            min_lr: where the cosine ends (the released DIT code: 1e-6); lr, min_lr and warmup_start_lr are
                absolute rates (lr after lr_scaling).
            ema_decay: keep an EMA of the trainable weights and evaluate with it (DIT: 0.999 or so).
            ema_warmup: the released DIT code's EMA: the shadow starts at the weights before training and update
                t uses decay min(ema_decay, (t + 1) / (t + 10)); the update count travels in checkpoints.
            threshold / threshold_on: a pixel is foreground when sigmoid(logit) > threshold ("probs"; DIT
                evaluates at 0.35) or logit > threshold ("logits"; SAM's 0, the same masks as probs 0.5).
            strict_pk: P@k counts IoU > k (published DIT code) or >= k (LAVT) when False.
            global_batch_size: the recipe's global batch; gradient accumulation is set so that batch per device
                x devices x nodes x accumulation equals it, whatever the hardware (an error says what to change).
            lr_scaling / lr_reference_batch: scale lr from the batch it was tuned at to the global batch used
                ("linear" or "sqrt"); "none" keeps lr as given.
            metrics: "referring" (oIoU, mIoU, P@k), "sod" (those + MAE, S/E/weighted-F/F-measure), "semantic"
                (those + classIoU, objectIoU); "auto" follows the DataModule (see samadapt/evaluation.py).
            eval_resolution: "original" (predictions resized back to each image's size, compared with the
                original target, as published evaluations do), "original_binary" (the released DIT code's:
                binarise at the model's size, then resize the mask; referring metrics only), "model" (letterboxed
                frame, fast) or "auto" (model for validation while fitting, original for test / validate /
                predict).
            model_args: SamAdaptModel's arguments (samadapt/model.py): the method, SAM and text encoder.
        """
        super().__init__()
        self.model = SamAdaptModel(**model_args)  # the CLI finds SamAdaptModel's options (and help) through this call
        self.save_hyperparameters()
        # Record the model's defaults as well: a checkpoint rebuilds the model from its hparams alone.
        self.save_hyperparameters({**model_defaults(), **self.hparams})
        names = [eval_prompts] if isinstance(eval_prompts, str) else list(eval_prompts)
        if not names:
            raise SamAdaptError("eval_prompts is empty; give at least one prompt combination, e.g. text")
        self.eval_kinds = {name: parse_prompt_kinds(name) for name in names}
        self.train_prompts = {k: float(v) for k, v in (train_prompts or {names[0]: 1.0}).items()}
        self.train_kinds = {k: parse_prompt_kinds(k) for k in self.train_prompts}
        if any(w < 0 for w in self.train_prompts.values()) or sum(self.train_prompts.values()) <= 0:
            raise SamAdaptError(f"train_prompts weights must be >= 0 with a positive sum, got {self.train_prompts}")
        warn_unseen_eval_prompts(self.train_prompts, names)
        weights = dict(loss_weights or {"bce": 1.0, "dice": 1.0, "iou": 1.0})
        # Terms the method adds itself (e.g. PMM's point distance), weight 1 unless loss_weights names them.
        method_terms = self.model.method.auxiliary_loss_names
        self.auxiliary_weights = {name: float(weights.pop(name, 1.0)) for name in method_terms}
        self.loss = SegmentationLoss(weights)
        check_threshold(threshold, threshold_on)
        if eval_resolution != "auto" and eval_resolution not in RESOLUTIONS:
            raise SamAdaptError(f"eval_resolution must be auto or one of {', '.join(RESOLUTIONS)}, "
                                f"got {eval_resolution!r}")
        self.metric_family = "referring" if metrics == "auto" else check_family(metrics)
        self.val_metrics = self._metrics()
        self.test_metrics = torch.nn.ModuleList()
        self.test_pooled = self._metrics()  # every test split together
        self.test_split_names: list[str] = []
        if ema_warmup and not ema_decay:
            raise SamAdaptError("ema_warmup needs an EMA: set model.ema_decay (the released DIT code: 0.9997)")
        self.ema = EMA(self.model, ema_decay, warmup=ema_warmup) if ema_decay else None
        self._ema_scope = ExitStack()
        self._prompt_rng = random.Random(0)

    def _metrics(self) -> torch.nn.ModuleDict:
        hp = self.hparams
        return torch.nn.ModuleDict({name: EvalMetrics(self.metric_family, hp.threshold, hp.threshold_on, hp.strict_pk)
                                    for name in self.eval_kinds})

    def _choose_metrics(self) -> bool:
        """With metrics "auto", the dataset decides which metrics its published results use; True if changed."""
        if self.hparams.metrics != "auto" or metrics_for(self.trainer.datamodule) == self.metric_family:
            return False
        self.metric_family = metrics_for(self.trainer.datamodule)
        self.val_metrics, self.test_pooled = self._metrics().to(self.device), self._metrics().to(self.device)
        return True

    def eval_resolution(self) -> str:
        chosen = self.hparams.eval_resolution
        if chosen != "auto":
            return chosen
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        return "model" if fitting else "original"

    # ---- parameters and checkpoints ----------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        return {
            "trainable_params": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "total_params": sum(p.numel() for p in self.parameters()),
        }

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit" and hp.global_batch_size:
            trainer = self.trainer
            steps = global_batch_accumulation(hp.global_batch_size, trainer.datamodule.batch_size,
                                              trainer.num_devices, trainer.num_nodes, trainer.accumulate_grad_batches)
            trainer.accumulate_grad_batches = steps

    def configure_model(self) -> None:
        if self.device_mesh is not None:  # Lightning's ModelParallelStrategy: FSDP2 for full fine-tuning
            shard_for_full_finetune(self.model, self.device_mesh["data_parallel"])

    def on_fit_start(self) -> None:
        counts = self.parameter_counts()
        assert counts["trainable_params"] == self.model.trainable_count, (counts, self.model.trainable)
        for logger in self.loggers:
            logger.log_hyperparams({**counts, "trainable_modules": self.model.trainable})
        self._prompt_rng = random.Random(self.trainer.global_rank + 1000 * (self.trainer.current_epoch + 1))
        if self.model.embedding_cache is not None:
            rank_zero_info(cache_plan(self.trainer.datamodule))

    def configure_callbacks(self) -> list[L.Callback]:
        from samadapt.training.resume import ExactResume  # random states in checkpoints, for exact resume

        return [ExactResume()]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The frozen base is rebuilt from hparams["sam_checkpoint"]; keep megabytes, not the whole SAM.
        keep = {"model." + k for k in self.model.trainable_state_dict()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
            checkpoint["ema_updates"] = self.ema.updates  # a resumed run continues the same decay sequence

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
            self.ema.load_state_dict(checkpoint["ema"], updates=checkpoint.get("ema_updates"))

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
        low_res, iou_pred, auxiliary = self.model(batch, prompt_kinds, auxiliary_losses=True)
        loss, parts = self.loss(self.model.upsample(low_res), batch["mask"].float(), iou_pred)  # uint8 {0, 1}
        for name, value in auxiliary.items():
            loss = loss + self.auxiliary_weights[name] * value
            parts[name] = value.detach()
        return loss, parts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        start = time.perf_counter()
        loss, parts = self.step_loss(batch, self._draw_train_kinds(len(batch["text"])))
        if self.trainer.world_size > 1 and self.device_mesh is None:  # DDP; FSDP2 (device mesh) needs no touch
            # DDP waits for a gradient of every trainable parameter on every rank; a prompt mix can leave some
            # unused in a batch (no text, no box): touch them all, so plain strategy=ddp neither fails nor hangs.
            loss = loss + 0.0 * sum(p.sum() for p in self.parameters() if p.requires_grad)
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        self.log("train/step_seconds", time.perf_counter() - start, batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here, not in on_train_batch_end: checkpoints saved at this step's batch end must include this update.
        if self.ema is not None:
            self.ema.update()

    def predict_masks(self, batch: dict, prompts: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (B,1,S,S) in the letterboxed frame and a boolean map of the valid (unpadded) area."""
        low_res, _ = self(batch, prompts)
        probs = self.model.upsample(low_res).sigmoid()
        size = probs.shape[-1]
        valid = torch.zeros_like(probs, dtype=torch.bool)
        for i, (top, left, h, w) in enumerate(content_boxes(batch, size, self.model.letterbox).tolist()):
            valid[i, :, top : top + h, left : left + w] = True
        return probs, valid

    def _evaluate(self, batch: dict, *metric_sets: torch.nn.ModuleDict, key_prefix: str = "") -> None:
        resolution = self.eval_resolution()
        for name in self.eval_kinds:
            low_res, _ = self(batch, name)
            samples = eval_samples(self.model.upsample(low_res), batch, resolution)
            for metrics in metric_sets:
                metrics[name].update(samples, key_prefix)

    def _log_metrics(self, prefix: str, metrics: torch.nn.ModuleDict, per_sample: bool = False) -> list[dict]:
        """Log and reset; returns one report row per prompt combination (values, per-class details and, with
        per_sample, every sample's IoU: a collective, so every process calls it)."""
        rows = []
        for i, (name, metric) in enumerate(metrics.items()):
            values = metric.compute()
            if i == 0:  # the first prompt combination is the headline number (and what checkpoints monitor)
                self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, add_dataloader_idx=False)
            if len(metrics) > 1:
                self.log_dict({f"{prefix}/{name}/{k}": v for k, v in values.items()}, add_dataloader_idx=False)
            rows.append({"prompts": name, **{k: float(v) for k, v in values.items()}, **metric.details()})
            if per_sample:
                rows[-1]["per_sample"] = metric.per_sample()
            metric.reset()
        return rows

    def _use_ema_weights(self) -> None:
        """Evaluate with the EMA weights until the epoch's end hook closes the scope (no-op without EMA)."""
        if self.ema is not None:
            self._ema_scope.enter_context(self.ema.applied())

    def on_validation_epoch_start(self) -> None:
        self._choose_metrics()
        self._use_ema_weights()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)
        self._ema_scope.close()

    def on_test_epoch_start(self) -> None:
        changed = self._choose_metrics()
        names = list(getattr(self.trainer.datamodule, "test_split_names", None) or ["test"])
        if changed or len(names) != len(self.test_metrics) or names != self.test_split_names:
            self.test_split_names = names
            self.test_metrics = torch.nn.ModuleList([self._metrics() for _ in names]).to(self.device)
        self._use_ema_weights()

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        split = self.test_split_names[dataloader_idx]
        self._evaluate(batch, self.test_metrics[dataloader_idx], self.test_pooled, key_prefix=f"{split}/")

    def on_test_epoch_end(self) -> None:
        rows = []
        for name, metrics in zip(self.test_split_names, self.test_metrics, strict=True):
            rows += [{"split": name, **row} for row in self._log_metrics(f"test/{name}", metrics, per_sample=True)]
        if len(self.test_split_names) > 1:
            rows += [{"split": "all", **row} for row in self._log_metrics("test", self.test_pooled)]
        else:  # one split: test/<metric> is that split's numbers
            self._log_metrics("test", self.test_pooled)
        self._ema_scope.close()
        folder = self.trainer.log_dir or self.trainer.default_root_dir  # log_dir broadcasts: every process asks
        if self.trainer.is_global_zero:  # test_metrics.json / .md and test_per_sample.csv in the run folder
            hp = self.hparams
            settings = {"metrics": self.metric_family, "eval_resolution": self.eval_resolution(),
                        "threshold": hp.threshold, "threshold_on": hp.threshold_on, "strict_pk": hp.strict_pk}
            write_report(folder, rows, settings)

    def on_predict_epoch_start(self) -> None:
        self._use_ema_weights()

    def on_predict_epoch_end(self) -> None:
        self._ema_scope.close()

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """One row per sample: its mask at the original size as `test` scores it, score, IoU (prediction_writer)."""
        from samadapt.training.prediction_writer import predicted_samples

        datamodule = self._trainer.datamodule if self._trainer is not None else None
        names = list(getattr(datamodule, "test_split_names", None) or [])
        split = names[dataloader_idx] if dataloader_idx < len(names) else f"loader{dataloader_idx}"
        return predicted_samples(self, batch, split)

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise SamAdaptError(f"method {self.hparams.method!r} trains nothing: evaluate it with "
                                "`samadapt validate` or `samadapt test` (no fit, no checkpoint needed)")
        hp = self.hparams
        return configure_optimization(  # the trainer is read only to scale lr or to lay out a schedule
            params, self._trainer, optimizer=hp.optimizer, lr=hp.lr, betas=hp.betas, eps=hp.eps,
            weight_decay=hp.weight_decay, scheduler=hp.scheduler, warmup_steps=hp.warmup_steps,
            warmup_epochs=hp.warmup_epochs, warmup_start_lr=hp.warmup_start_lr, min_lr=hp.min_lr,
            lr_scaling=hp.lr_scaling, lr_reference_batch=hp.lr_reference_batch,
        )
