"""SamAdaptPredictor: a trained adapter on your own images, prompts in original image coordinates.

    predictor = SamAdaptPredictor.from_checkpoint("runs/samadapt/version_0/checkpoints/last.ckpt")
    predictor.set_image("photo.jpg")                      # path, PIL image or HxWx3 uint8 array
    result = predictor.predict(text="the red car")        # masks (1,H,W) bool, scores (1,), probs (1,H,W)
    result = predictor.predict(text="the red car", points=[(120, 80)])   # same image, another prompt
    result = predictor.predict(points=[(120, 80)], multimask_output=True)    # SAM's 3 masks and their scores
    again = predictor.predict(points=[(120, 80)], mask_input=result.low_res_logits[[result.scores.argmax()]])

SamPredictor's other entry points are here too: `predict_torch` (batched boxes/points already in the input
frame), `get_image_embedding()` and `reset_image()` (segment_anything/predictor.py); for runs whose result is
SAM with other weights, `automatic_mask_generator(**options)` is segment_anything's own generator on them.

The image is prepared as SAM's own predictor does (samadapt/sam/preprocess.py): resized with the longest side
at the model's size, normalised, zero-padded; prompts scale per axis; logits are resized back to the original
size before thresholding. The image sits where the run's training put it (model.letterbox: top left as SAM, or
centred as DIT), and prompts and the crop of the logits follow.
When the method leaves the image encoder frozen and unconditioned (`reuses_image_embedding`), the image is
encoded once in `set_image` and every prompt reuses that embedding, as SAM's own predictor does; methods that
put text inside the encoder (DIT) encode the image again for each prediction, with that prediction's text.

`precision` ("auto" default, "bf16", "fp32"; samadapt/inference/precision.py) runs the image encoding and the
prompt decoding under bfloat16 autocast when bf16; `.precision` says which was chosen. Masks, scores and
logits come back as float32 either way, and the run's threshold applies to the float32 logits.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_modules.pipeline.images import LoadReport, read_rgb
from data_modules.pipeline.transforms import content_box, letterbox_image
from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.evaluation.protocol import binarize
from samadapt.inference.precision import inference_autocast, resolve_precision
from samadapt.model import parse_prompt_kinds
from samadapt.sam.preprocess import boxes_to_input, coords_to_input, to_original
from samadapt.sam.prompt_checks import check_finite
from samadapt.text import TextFeatures
from samadapt.training.module import SamAdaptModule

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass
class Prediction:
    """K masks at the original size: one per box (K = 1 without boxes), or SAM's 3 with multimask_output."""

    masks: np.ndarray  # (K, H, W) bool (float32 logits with return_logits=True)
    scores: np.ndarray  # (K,) the decoder's predicted IoU of each mask
    probs: np.ndarray  # (K, H, W) float32 foreground probabilities
    logits: np.ndarray  # (K, H, W) float32 mask logits (SamPredictor's return_logits=True)
    low_res_logits: np.ndarray | None = None  # (K, 4h, 4w) input-frame logits: the next predict's mask_input


def load_module(
    checkpoint: str | Path, sam_checkpoint: str | None = None, text_options: dict | None = None,
    device: str | torch.device = "cpu",
) -> SamAdaptModule:
    """A trained module from a samadapt checkpoint (trainable weights only; the frozen SAM is rebuilt from
    `sam_checkpoint`, default the path recorded at training), in eval mode, EMA weights in place if kept."""
    path = Path(checkpoint)
    if not path.is_file():
        raise MissingFileError(path, "checkpoint", "Give the .ckpt a training run wrote (<run>/checkpoints/).")
    overrides = {"embedding_cache_mb": 0.0}  # the predictor keeps its one image embedding itself
    if sam_checkpoint is not None:
        overrides["sam_checkpoint"] = str(sam_checkpoint)
    if text_options is not None:
        overrides["text_options"] = text_options
    try:
        module = SamAdaptModule.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)
    except SamAdaptError:  # e.g. the base SAM checkpoint is missing: that message names the path
        raise
    except Exception as err:  # not a checkpoint, truncated, a pickle with globals, another model's keys
        raise SamAdaptError(f"cannot load {path} as a samadapt checkpoint: {err}") from err
    if module.ema is not None and module.ema.shadow is not None:  # evaluation used the EMA weights: so do we
        with torch.no_grad():
            for name, param in module.ema.params.items():
                param.copy_(module.ema.shadow[name])
    return module.eval().to(device)


def _as_rgb(image: ImageInput) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return read_rgb(image, LoadReport(), "Check the path.")
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise SamAdaptError(f"image must be an HxWx3 uint8 RGB array, got shape {array.shape} {array.dtype}")
    return np.ascontiguousarray(array[..., :3])


def _float_array(values, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == len(shape) - 1:
        array = array[None]
    if array.ndim != len(shape) or any(s != -1 and s != d for s, d in zip(shape, array.shape, strict=True)):
        raise SamAdaptError(f"{what} must have shape {tuple('N' if s == -1 else s for s in shape)}, got {array.shape}")
    return array


def _check_inside(xy: np.ndarray, hw: tuple[int, int], what: str, right_edge_ok: bool) -> None:
    h, w = hw
    limit_x, limit_y = (w, h) if right_edge_ok else (w - 1e-6, h - 1e-6)
    bad = (xy[..., 0] < 0) | (xy[..., 1] < 0) | (xy[..., 0] > limit_x) | (xy[..., 1] > limit_y)
    if bad.any():
        x, y = xy.reshape(-1, 2)[int(np.flatnonzero(bad.reshape(-1))[0])]
        raise SamAdaptError(f"{what} ({x:g}, {y:g}) is outside the {w}x{h} image (x in [0, {w}), y in [0, {h}))")


def check_prompts(hw: tuple[int, int], points=None, point_labels=None, boxes=None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Points (N,2), labels (N,) and boxes (K,4) as arrays, checked against an image of size hw = (H, W)."""
    pts, labels, box_array = np.zeros((0, 2)), np.zeros((0,), dtype=np.int64), None
    if points is not None and len(points):
        pts = _float_array(points, (-1, 2), "points")
        check_finite(pts, "point")
        _check_inside(pts, hw, "point", right_edge_ok=False)
        labels = np.ones(len(pts), dtype=np.int64) if point_labels is None else np.asarray(point_labels)
        if labels.shape != (len(pts),) or not np.isin(labels, (0, 1)).all():
            raise SamAdaptError(f"point_labels must be one 1 (foreground) or 0 (background) per point, "
                                f"got {np.asarray(point_labels).tolist()} for {len(pts)} points")
    if boxes is not None and len(boxes):
        box_array = _float_array(boxes, (-1, 4), "boxes")
        check_finite(box_array, "box")
        for x0, y0, x1, y1 in box_array:
            if x1 < x0 or y1 < y0:
                raise SamAdaptError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs x0 <= x1 and y0 <= y1")
        _check_inside(box_array.reshape(-1, 2, 2), hw, "box corner", right_edge_ok=True)
    return pts, labels.astype(np.int64), box_array


class SamAdaptPredictor:
    def __init__(self, module: SamAdaptModule, device: str | torch.device = "cpu", precision: str = "auto") -> None:
        self.module = module.eval().to(device)
        self.model = module.model
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)  # "bf16" or "fp32", never "auto"
        self.threshold = float(module.hparams.threshold)
        self.threshold_on = str(module.hparams.get("threshold_on", "probs"))
        self.image_size = self.model.image_size
        self.letterbox = self.model.letterbox  # where the run placed images in the square: so does prediction
        self.original_image: np.ndarray | None = None  # the image set last, HxWx3 uint8 RGB
        self._image: torch.Tensor | None = None  # (1,3,S,S) letterboxed
        self._orig_hw: tuple[int, int] = (0, 0)
        self._content_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, left, h, w) in the letterboxed frame
        self._embedding: torch.Tensor | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, sam_checkpoint: str | None = None, text_options: dict | None = None,
                        device: str | torch.device = "cpu", precision: str = "auto") -> "SamAdaptPredictor":
        return cls(load_module(path, sam_checkpoint, text_options, device), device, precision)

    @classmethod
    def from_export(cls, folder: str | Path, sam_checkpoint: str, text_options: dict | None = None,
                    device: str | torch.device = "cpu", precision: str = "auto") -> "SamAdaptPredictor":
        """From `samadapt export` output: the base SAM checkpoint plus that folder, nothing else."""
        from samadapt.inference.export import load_export

        return cls(load_export(folder, sam_checkpoint, text_options), device, precision)

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, sam_checkpoint: str | Path | None = None,
                        text_options: dict | None = None, device: str | torch.device = "cpu",
                        revision: str | None = None, precision: str = "auto") -> "SamAdaptPredictor":
        """From an export folder or a Hugging Face Hub repository holding one (fetched with huggingface_hub);
        `sam_checkpoint` defaults to checkpoints/<the base SAM file name the adapter records>."""
        from samadapt.inference.export import load_pretrained

        return cls(load_pretrained(path_or_repo_id, sam_checkpoint, text_options, revision), device, precision)

    # ---- what this adapter accepts ------------------------------------------------------------
    @property
    def reuses_image_embedding(self) -> bool:
        """True when one image embedding serves every prompt; False when each text re-encodes the image."""
        return not self.model.method.conditions_encoder and not self.module.hparams.train_image_encoder

    @property
    def uses_text(self) -> bool:
        return self.model.method.uses_text and self.model.text_encoder is not None

    @property
    def trained_prompts(self) -> list[str]:
        """The prompt combinations the adapter was trained with ("text", "points+text", ...)."""
        return list(self.module.train_prompts)

    # ---- image and prompts ---------------------------------------------------------------------
    @torch.no_grad()
    def set_image(self, image: ImageInput) -> None:
        """Letterbox the image (and encode it once, when prompts can share the embedding)."""
        rgb = _as_rgb(image)
        h, w = rgb.shape[:2]
        frame = letterbox_image(rgb, self.image_size, letterbox=self.letterbox)[None].to(self.device)
        self._content_box = content_box((h, w), self.image_size, letterbox=self.letterbox)
        self._image = self.model.prepare_images(frame, torch.tensor([self._content_box]))
        self.original_image, self._orig_hw = rgb, (h, w)
        self._embedding = None
        if self.reuses_image_embedding:
            with self._autocast():
                self._embedding = self.model.method.encode(self.model.sam, self._image, None).float()

    def _check_text(self, text) -> None:
        if not str(text).strip():
            raise SamAdaptError("text is empty; give a phrase or leave text out")
        if not self.uses_text:
            raise SamAdaptError(f"this adapter ({self.module.hparams.method}) does not read text; "
                                "prompt it with points or a box")

    def _prompt_batch(self, text, points, point_labels, boxes) -> tuple[dict, frozenset[str]]:
        """The prompts as a batch in the letterboxed frame, one sample per box, and their kinds."""
        kinds = []
        if text is not None:
            self._check_text(text)
            kinds.append("text")
        pts, labels, box_array = check_prompts(self._orig_hw, points, point_labels, boxes)
        if len(pts):
            kinds.append("points")
        if box_array is not None:
            kinds.append("box")
        else:
            box_array = np.zeros((1, 4))  # unused: the kinds leave the box out
        count = len(box_array)
        batch = {
            "image": self._image.expand(count, -1, -1, -1),
            "points": torch.tensor(coords_to_input(pts, self._orig_hw, self.image_size, self.letterbox),
                                   dtype=torch.float32)
            .expand(count, -1, -1).to(self.device),
            "point_labels": torch.as_tensor(labels, dtype=torch.long).expand(count, -1).to(self.device),
            "box": torch.tensor(boxes_to_input(box_array, self._orig_hw, self.image_size, self.letterbox),
                                dtype=torch.float32)
            .to(self.device),
            "text": [str(text) if text is not None else ""] * count,
            "orig_size": torch.tensor([self._orig_hw] * count),
        }
        return batch, parse_prompt_kinds("+".join(sorted(kinds)) or "none")

    @torch.no_grad()
    def predict(self, image: ImageInput | None = None, text: str | None = None, points=None, point_labels=None,
                boxes=None, threshold: float | None = None, *, multimask_output: bool = False, mask_input=None,
                return_logits: bool = False) -> Prediction:
        """Masks for one prompt set, or one per box: `points` [(x, y), ...] with `point_labels` (1 foreground,
        0 background; default all 1), `boxes` (x0, y0, x1, y1) or a list of them, `text` a phrase. All
        coordinates in pixels of the original image. `image` sets a new image first.

        As SamPredictor.predict: `multimask_output` gives SAM's 3 masks and scores (one prompt set only);
        `mask_input` a previous prediction's low-res logits (1, 4h, 4w), e.g. `low_res_logits[[best]]`;
        `return_logits` puts logits in `masks` instead of booleans."""
        if image is not None:
            self.set_image(image)
        self._require_image()
        batch, kinds = self._prompt_batch(text, points, point_labels, boxes)
        count = len(batch["text"])
        if multimask_output and count > 1:
            raise SamAdaptError(f"multimask_output gives 3 masks for ONE prompt set; got {count} boxes. "
                                "Give one box, or use predict_torch for a batch of boxes")
        low_res_prompt = None if mask_input is None else self._mask_input(mask_input, count, leading=1)
        low_res, iou = self._decode(batch, kinds, low_res_prompt, multimask_output)
        logits, masks = self._to_original(low_res, threshold, return_logits)
        return Prediction(masks.flatten(0, 1).cpu().numpy(), iou.flatten().float().cpu().numpy(),
                          logits.flatten(0, 1).sigmoid().cpu().numpy(), logits.flatten(0, 1).cpu().numpy(),
                          low_res.flatten(0, 1).float().cpu().numpy())

    @torch.no_grad()
    def predict_torch(self, point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True, return_logits: bool = False, text: str | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SamPredictor.predict_torch: B prompt sets already in the input frame (points (B,N,2) with labels
        (B,N), boxes (B,4), as `samadapt.sam.preprocess.coords_to_input` / `boxes_to_input` map them), mask_input
        (B,1,4h,4w), one `text` for all -> masks (B,C,H,W) at the original size, scores (B,C), low-res logits
        (B,C,4h,4w); C is 3 with multimask_output, else 1."""
        self._require_image()
        if point_coords is None and boxes is None and text is None:
            raise SamAdaptError("predict_torch needs point_coords with point_labels, boxes or text")
        for values, what in ((point_coords, "point_coords"), (boxes, "boxes")):
            if values is not None:
                check_finite(values.reshape(-1, values.shape[-1]), what)
        if point_coords is not None and (point_labels is None or point_labels.shape != point_coords.shape[:2]):
            raise SamAdaptError("point_labels must be given with point_coords, shape (B,N) for points (B,N,2)")
        sizes = {len(t) for t in (point_coords, boxes, mask_input) if t is not None}
        if len(sizes) > 1:
            raise SamAdaptError(f"point_coords, boxes and mask_input must have the same batch size, got {sizes}")
        count = sizes.pop() if sizes else 1
        kinds = [k for k, given in (("points", point_coords is not None), ("box", boxes is not None),
                                    ("text", text is not None)) if given]
        if text is not None:
            self._check_text(text)
        batch = {
            "points": None if point_coords is None else point_coords.to(self.device, torch.float32),
            "point_labels": None if point_labels is None else point_labels.to(self.device, torch.long),
            "box": None if boxes is None else boxes.reshape(count, 4).to(self.device, torch.float32),
            "text": [str(text or "")] * count,
        }
        low_res_prompt = None if mask_input is None else self._mask_input(mask_input, count, leading=2)
        low_res, iou = self._decode(batch, parse_prompt_kinds("+".join(sorted(kinds))), low_res_prompt,
                                    multimask_output)
        logits, masks = self._to_original(low_res, None, return_logits)
        return masks, iou, low_res

    def get_image_embedding(self) -> torch.Tensor:
        """The (1,C,h,w) embedding of the image set last, as SamPredictor.get_image_embedding."""
        self._require_image()
        if self._embedding is None:
            raise SamAdaptError(f"this adapter ({self.module.hparams.method}) encodes the image anew for each "
                                "prompt (its encoder reads the text or is trained): there is no one image embedding")
        return self._embedding

    def reset_image(self) -> None:
        """Forget the image set last (SamPredictor.reset_image); predict then needs set_image again."""
        self.original_image, self._image, self._embedding = None, None, None
        self._orig_hw, self._content_box = (0, 0), (0, 0, 0, 0)

    def automatic_mask_generator(self, **options):
        """segment_anything's SamAutomaticMaskGenerator on this run's SAM, for the runs whose result is SAM with
        other weights (decoder_only / SAM-F, full, LoRA): `options` are the generator's own (points_per_side,
        pred_iou_thresh, ...); `.generate(rgb_uint8)` returns its list of mask records at the original size."""
        from segment_anything import SamAutomaticMaskGenerator

        from samadapt.inference.export import MERGEABLE

        method = self.module.hparams.method
        if method not in MERGEABLE:
            raise SamAdaptError(f"automatic masks need a run whose result is SAM itself ({', '.join(MERGEABLE)}); "
                                f"a {method} run adds text or layers that SAM's point grid cannot drive")
        if self.letterbox != "top_left":
            raise SamAdaptError(f"this run was trained with letterbox {self.letterbox!r}; the generator places "
                                "images top-left as SAM does, unlike its training")
        return SamAutomaticMaskGenerator(self.model.sam, **options)

    # ---- decoding --------------------------------------------------------------------------------
    def _autocast(self):
        return inference_autocast(self.device, self.precision)

    def _require_image(self) -> None:
        if self._image is None:
            raise SamAdaptError("no image: call set_image(image) first or pass image=")

    def _mask_input(self, mask_input, count: int, leading: int) -> torch.Tensor:
        """A low-res logit mask as SamPredictor takes it, (1,4h,4w) in predict or (B,1,4h,4w) in predict_torch,
        checked and repeated to one per prompt set."""
        side = self.model.sam.prompt_encoder.mask_input_size
        tensor = torch.as_tensor(np.asarray(mask_input) if not torch.is_tensor(mask_input) else mask_input)
        expected = (1, *side) if leading == 1 else (count, 1, *side)
        if tuple(tensor.shape) != expected:
            raise SamAdaptError(f"mask_input must have shape {expected} (a previous prediction's low_res_logits), "
                                f"got {tuple(tensor.shape)}")
        return tensor.reshape(-1, 1, *side).expand(count, -1, -1, -1).to(self.device, torch.float32)

    def _decode(self, batch: dict, kinds: frozenset[str], masks: torch.Tensor | None, multimask_output: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits (B,C,4h,4w) and scores (B,C), float32, of the batch's prompt sets on the image set last."""
        with self._autocast():
            low_res, iou = self._decode_prompts(batch, kinds, masks, multimask_output)
        return low_res.float(), iou.float()

    def _decode_prompts(self, batch: dict, kinds: frozenset[str], masks: torch.Tensor | None,
                        multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        count = len(batch["text"])
        features = self.model.encode_text(batch["text"]) if "text" in kinds else None
        embedding = self._embedding
        if embedding is None:  # the encoder reads the text: encode this image with this prediction's text
            first = None if features is None else TextFeatures(features.tokens[:1], features.mask[:1],
                                                                features.pooled[:1])
            embedding = self.model.method.encode(self.model.sam, self._image, first)
        low_res, iou = self.model.decode_prompts(embedding.expand(count, -1, -1, -1), batch, features,
                                                 [kinds] * count, masks=masks, multimask_output=multimask_output)
        wanted = 3 if multimask_output else 1
        if low_res.shape[1] != wanted:
            raise SamAdaptError(f"this adapter's decoder ({self.module.hparams.method}) gives {low_res.shape[1]} "
                                f"masks per prompt, not {wanted}: use multimask_output={not multimask_output}")
        return low_res, iou

    def _to_original(self, low_res: torch.Tensor, threshold: float | None, return_logits: bool
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,C,H,W) at the original size (as Sam.postprocess_masks) and the masks: booleans by the
        run's rule (threshold_on probs or logits, as its evaluation), or the logits themselves."""
        logits = to_original(self.model.upsample(low_res), self._orig_hw, content_box=self._content_box)
        if return_logits:
            return logits, logits
        if threshold is None:
            return logits, binarize(logits, self.threshold, self.threshold_on)
        return logits, binarize(logits, threshold, "probs")  # a probability given by the caller
