"""The app's one use of the inference API: a SamAdaptPredictor per checkpoint, prompts checked against what the
adapter was trained with, and each image encoded once per model when the method allows it."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from samadapt.app.describe import describe_method
from samadapt.app.run_scores import read_test_score
from samadapt.errors import SamAdaptError
from samadapt.inference.predictor import SamAdaptPredictor
from samadapt.training.wandb_run import method_label

KIND_WORDS = {"text": "text", "points": "clicked points", "box": "a box"}


@dataclass
class Prompts:
    """One request's prompts, in pixels of the original image."""

    text: str | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    point_labels: list[int] = field(default_factory=list)  # 1 positive, 0 negative
    box: tuple[float, float, float, float] | None = None

    @property
    def kinds(self) -> frozenset[str]:
        given = (("text", self.text is not None), ("points", bool(self.points)), ("box", self.box is not None))
        return frozenset(kind for kind, present in given if present)


@dataclass
class Answer:
    """What one model's panel shows: a mask with its score, or a plain sentence why not."""

    model: str
    message: str  # a refusal, or a short note about this prediction
    mask: np.ndarray | None = None  # (H, W) bool at the image's size
    score: float | None = None  # the decoder's predicted IoU
    encoded_image: bool = False  # whether this request ran the image encoder
    seconds: float = 0.0  # this model's share of the request


def describe(combos: list[str]) -> str:
    return ", ".join("no prompt" if c == "none" else " + ".join(KIND_WORDS[k] for k in c.split("+")) for c in combos)


class AppModel:
    def __init__(self, name: str, predictor: SamAdaptPredictor, test_score: dict | None = None) -> None:
        self.name = name
        self.predictor = predictor
        self.method = str(predictor.module.hparams.method)
        self.trained = predictor.trained_prompts  # e.g. ["text"], ["points+text", "box"], ["none"]
        self.trained_combos = {frozenset() if c == "none" else frozenset(c.split("+")) for c in self.trained}
        self.trained_kinds = frozenset().union(*self.trained_combos)
        self.test_score = test_score  # samadapt/app/run_scores.py: the run's test metric, None if not tested
        self._image_key: str | None = None

    @classmethod
    def from_checkpoint(cls, path: Path, name: str, sam_checkpoint: str | None = None,
                        device: str = "cpu", precision: str = "auto") -> "AppModel":
        return cls(name, SamAdaptPredictor.from_checkpoint(path, sam_checkpoint, device=device, precision=precision),
                   read_test_score(path))

    @property
    def label(self) -> str:
        """The name, with the method when the name does not say it."""
        return self.name if self.name == self.method else f"{self.name} ({self.method})"

    @property
    def reuses_image_embedding(self) -> bool:
        return self.predictor.reuses_image_embedding

    def info(self) -> dict:
        description = describe_method(self.predictor.model.method, self.reuses_image_embedding)
        return {"name": self.name, "label": self.label, "method": method_label(self.predictor.module.hparams),
                "trained_prompts": self.trained, "trained": describe(self.trained),
                "uses_text": self.predictor.uses_text, "reuses_image_embedding": self.reuses_image_embedding,
                "description": description, "test": self.test_score, "precision": self.predictor.precision}

    def refusal(self, prompts: Prompts) -> str | None:
        """A plain sentence when this adapter was not trained for these prompts, else None."""
        kinds = prompts.kinds
        if "text" in kinds and not self.predictor.uses_text:
            return f"{self.label} does not read text: it was trained with {describe(self.trained)}."
        untrained = sorted(kinds - self.trained_kinds)
        if untrained:
            words = " or ".join(KIND_WORDS[k] for k in untrained)
            return (f"{self.label} was trained with {describe(self.trained)}, not with {words}; "
                    f"remove them to use this model.")
        if not kinds and "none" not in self.trained:
            return f"Give a prompt: {self.label} was trained with {describe(self.trained)}."
        return None

    @torch.no_grad()
    def prepare(self, image_key: str, rgb: np.ndarray) -> bool:
        """Set the image on the predictor unless it is already the current one; True when it was set."""
        if image_key == self._image_key:
            return False
        self._image_key = None  # stays unset if set_image fails
        self.predictor.set_image(rgb)
        self._image_key = image_key
        return True

    @torch.no_grad()
    def segment(self, image_key: str, rgb: np.ndarray, prompts: Prompts) -> Answer:
        refused = self.refusal(prompts)
        if refused:
            return Answer(self.name, refused)
        start = time.perf_counter()
        encoded = self.prepare(image_key, rgb) and self.reuses_image_embedding
        try:
            result = self.predictor.predict(text=prompts.text, points=prompts.points or None,
                                            point_labels=prompts.point_labels or None,
                                            boxes=[prompts.box] if prompts.box is not None else None)
        except SamAdaptError as err:
            return Answer(self.name, str(err))
        trained = describe(self.trained)
        note = "" if prompts.kinds in self.trained_combos else f"Trained with {trained}, not this combination. "
        if not self.reuses_image_embedding:
            encoded = True
            note += "Image re-encoded for this request."
        else:
            note += "Image encoded for this image." if encoded else "Reused this image's embedding."
        return Answer(self.name, note.strip(), result.masks[0], float(result.scores[0]), encoded,
                      round(time.perf_counter() - start, 3))
