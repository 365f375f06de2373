"""`make bench` section 8: inference end to end against the peers a user would pick instead.

From an image file on disk to a mask at the original size, ViT-B at 1024 px, one point; then a second point on
the same image (the image embedding reused). Three contenders with the very same weights:
- segment_anything's `SamPredictor` (the image read with PIL, as its README does with cv2);
- Hugging Face `SamModel` + `SamProcessor` (its documented path: processor, `get_image_embeddings` once, the
  model on the embedding per prompt, `post_process_masks`);
- samadapt's `SamAdaptPredictor` with an untrained decoder-only adapter (SAM as it is).
The weights start as a random SamModel (every tensor at a sane scale), saved and converted with samadapt's
HF loader to the official format that the other two load. An A/A row (SamPredictor against itself) shows the
run's noise. In fp32 the masks are compared with SamPredictor's (IoU); in bf16 every contender runs under the
same `torch.autocast`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from samadapt.commands.timing import goal, side_by_side

POINTS = ([[400.0, 250.0]], [[150.0, 300.0]])  # two prompts, pixels of the 640 x 480 image
GOAL = 1.3


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _contenders(folder: Path, device: torch.device) -> dict:
    """name -> a function(image_path, bf16) -> list of (H, W) bool masks, one per prompt in POINTS.

    bf16 is each one's simplest working way: SamPredictor fails under a whole autocast (it calls .numpy() on
    bf16 scores), so its encoder runs under autocast and the prompt path in fp32 on the fp32-cast embedding."""
    from segment_anything import SamPredictor, sam_model_registry
    from transformers import SamConfig, SamImageProcessor, SamProcessor

    from samadapt.commands.convert_sam import main as convert
    from samadapt.inference.predictor import SamAdaptPredictor
    from samadapt.sam.hf_format import random_sam_model
    from samadapt.training.module import SamAdaptModule

    # the decoder's LayerNorm eps as segment_anything's (1e-5), so the three implementations compute the same
    hf = random_sam_model(SamConfig(mask_decoder_config={"layer_norm_eps": 1e-5}))
    hf.save_pretrained(folder / "hf")
    convert([str(folder / "hf"), str(folder / "sam_vit_b.pth")])
    hf = hf.to(device)
    processor = SamProcessor(SamImageProcessor())
    official = SamPredictor(sam_model_registry["vit_b"](checkpoint=str(folder / "sam_vit_b.pth")).to(device).eval())
    module = SamAdaptModule(method="decoder_only", sam_variant="vit_b", sam_checkpoint=str(folder / "sam_vit_b.pth"),
                            image_size=1024, eval_prompts=["points"], threshold=0.0, threshold_on="logits")
    ours = {bf16: SamAdaptPredictor(module, device, precision="bf16" if bf16 else "fp32") for bf16 in (False, True)}

    def run_official(path: Path, bf16: bool) -> list[np.ndarray]:
        with _autocast(device, bf16):
            official.set_image(np.asarray(Image.open(path).convert("RGB")))
        official.features = official.features.float()
        return [official.predict(np.array(p), np.array([1]), multimask_output=False)[0][0] for p in POINTS]

    def run_hf(path: Path, bf16: bool) -> list[np.ndarray]:
        image = Image.open(path).convert("RGB")
        inputs = processor(images=image, return_tensors="pt").to(device)
        with torch.no_grad(), _autocast(device, bf16):
            embedding = hf.get_image_embeddings(inputs["pixel_values"])
            masks = []
            for p in POINTS:
                prompt = processor(images=image, input_points=[[p]], return_tensors="pt")  # scaled like the image
                out = hf(image_embeddings=embedding, input_points=prompt["input_points"].to(device),
                         multimask_output=False)
                masks.append(processor.image_processor.post_process_masks(
                    out.pred_masks.float().cpu(), inputs["original_sizes"].cpu(),
                    inputs["reshaped_input_sizes"].cpu())[0][0, 0].numpy())
        return masks

    def run_ours(path: Path, bf16: bool) -> list[np.ndarray]:  # its own precision option, as a user sets it
        ours[bf16].set_image(path)
        return [ours[bf16].predict(points=p).masks[0] for p in POINTS]

    return {"SamPredictor": run_official, "SamPredictor (A/A)": run_official, "HF SamModel": run_hf,
            "samadapt": run_ours}


def inference_end_to_end(device: torch.device, repeats: int) -> dict:
    """Seconds per image (two prompts) of each contender in fp32 and bf16, the speed-up over the faster peer,
    and the fp32 masks' IoU with SamPredictor's."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(folder / "photo.jpg", quality=92)
        contenders = _contenders(folder, device)
        image = folder / "photo.jpg"
        reference = contenders["SamPredictor"](image, False)
        iou = {}
        for name in ("HF SamModel", "samadapt"):
            masks = contenders[name](image, False)
            iou[name] = min(float((m & r).sum() / max((m | r).sum(), 1)) for m, r in zip(masks, reference, strict=True))
        rows = {}
        for precision in ("fp32", "bf16"):
            def timed(fn, bf16=precision == "bf16"):
                def call():
                    with torch.no_grad():
                        fn(image, bf16)
                return call

            seconds = side_by_side({name: timed(fn) for name, fn in contenders.items()}, repeats=repeats)
            peer = min(seconds["SamPredictor"], seconds["HF SamModel"])
            speedup = peer / seconds["samadapt"]
            rows[precision] = {"seconds": seconds, "speedup_over_faster_peer": speedup,
                               "a_a_ratio": seconds["SamPredictor"] / seconds["SamPredictor (A/A)"],
                               **goal(speedup, GOAL, at_least=True)}
    return {"image": "640x480 JPEG, ViT-B at 1024 px, one point then another on the same image",
            "mask_iou_with_SamPredictor_fp32": iou, **rows}


def print_rows(result: dict) -> None:
    for precision in ("fp32", "bf16"):
        row = result[precision]
        times = ", ".join(f"{name} {s:.2f} s" for name, s in row["seconds"].items())
        met = {True: "met", False: "NOT met", None: "-"}[row["met"]]
        print(f"8 inference end to end, {precision}: {times}; samadapt x{row['speedup_over_faster_peer']:.2f} "
              f"over the faster peer (goal {row['goal']}: {met}); A/A x{row['a_a_ratio']:.2f}")
    ious = ", ".join(f"{k} {v:.4f}" for k, v in result["mask_iou_with_SamPredictor_fp32"].items())
    print(f"  fp32 mask IoU with SamPredictor's (lowest of the two prompts): {ious}")
