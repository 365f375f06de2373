"""From the raw image file to the mask at the original size, samadapt gives what segment_anything's SamPredictor
gives: for the same official-format checkpoint, image file and point / box / point+box prompts, through
samadapt's predictor, `samadapt segment` and the evaluation path (dataset, collate, model, original-size logits).

The fast suite uses a small SAM made from the official classes at 1024 px; the slow test the ViT-B architecture
from segment_anything's own builder (random weights: the weights do not matter for the arithmetic compared).
"""

import json
from functools import partial
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything import SamPredictor, sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide

from data_modules import FolderDataModule
from samadapt.cli import main
from samadapt.evaluation.protocol import eval_samples
from samadapt.inference.predictor import SamAdaptPredictor
from samadapt.sam.config import SAM_CONFIGS, SamConfig
from samadapt.sam.loop import normalize
from samadapt.training.module import SamAdaptModule

IMAGE_HW = (333, 517)  # odd sizes: x and y scale differently after rounding, as in SamPredictor
PROMPTS = {
    "points": {"points": [(260.0, 170.0), (100.0, 300.0)], "labels": [1, 0], "box": None},
    "box": {"points": None, "labels": None, "box": (150.0, 90.0, 420.0, 280.0)},
    "points+box": {"points": [(300.0, 200.0)], "labels": [1], "box": (150.0, 90.0, 420.0, 280.0)},
}
SMALL_1024 = SamConfig(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
                       image_size=1024, patch_size=16, window_size=8, prompt_embed_dim=64, decoder_mlp_dim=128,
                       decoder_num_heads=2, iou_head_hidden_dim=64)


def official_small_sam(cfg: SamConfig) -> Sam:
    """The official classes wired as segment_anything's _build_sam does, at the config's sizes."""
    grid = cfg.image_size // cfg.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.encoder_depth, embed_dim=cfg.encoder_embed_dim, img_size=cfg.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg.encoder_num_heads,
            patch_size=cfg.patch_size, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=cfg.encoder_global_attn_indexes, window_size=cfg.window_size,
            out_chans=cfg.prompt_embed_dim),
        prompt_encoder=PromptEncoder(embed_dim=cfg.prompt_embed_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=cfg.prompt_embed_dim, mlp_dim=cfg.decoder_mlp_dim,
                                          num_heads=cfg.decoder_num_heads),
            transformer_dim=cfg.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=cfg.iou_head_hidden_dim),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def randomise(sam: Sam, seed: int) -> Sam:
    """Random weights everywhere, position tables included (they start at zero in the official classes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sam.named_parameters():
            if "pos" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return sam


def write_image(path: Path) -> np.ndarray:
    """A 333 x 517 JPEG with smooth structure (blobs on a gradient); returns its decoded pixels."""
    h, w = IMAGE_HW
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([xx / w * 200, yy / h * 180, (xx + yy) / (h + w) * 120], -1) + 30
    for cy, cx, r, colour in ((170, 260, 70, (230, 40, 40)), (90, 120, 45, (40, 200, 60))):
        rgb[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = colour
    Image.fromarray(rgb.astype(np.uint8)).save(path, quality=92)
    return np.asarray(Image.open(path).convert("RGB"))


def save_adapter_checkpoint(module: SamAdaptModule, path: Path) -> None:
    """What a training run leaves: trainable weights and the hyperparameters (the frozen SAM by path)."""
    checkpoint = {"state_dict": {}, "hyper_parameters": dict(module.hparams),
                  "pytorch-lightning_version": lightning.__version__}
    module.on_save_checkpoint(checkpoint | {"state_dict": module.state_dict()})
    checkpoint["state_dict"] = {"model." + k: v for k, v in module.model.trainable_state_dict().items()}
    torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SAM_CONFIGS, "small_1024", SMALL_1024)
        torch.manual_seed(0)
        official = randomise(official_small_sam(SMALL_1024), seed=1)
        sam_path = folder / "small_sam.pth"
        torch.save(official.state_dict(), sam_path)  # the official format: a plain state dict
        rgb = write_image(folder / "photo.jpg")
        module = SamAdaptModule(method="decoder_only", sam_variant="small_1024", sam_checkpoint=str(sam_path),
                                eval_prompts=["points", "box", "points+box"], threshold=0.0, threshold_on="logits")
        ckpt = folder / "adapter.ckpt"
        save_adapter_checkpoint(module, ckpt)
        yield {"folder": folder, "official": official, "sam_path": sam_path, "rgb": rgb, "module": module,
               "ckpt": ckpt, "patch": patch}


def official_logits(setup, prompt: dict) -> np.ndarray:
    predictor = SamPredictor(setup["official"])
    predictor.set_image(setup["rgb"])
    points = None if prompt["points"] is None else np.array(prompt["points"])
    labels = None if prompt["labels"] is None else np.array(prompt["labels"])
    box = None if prompt["box"] is None else np.array(prompt["box"])
    logits, _, _ = predictor.predict(point_coords=points, point_labels=labels, box=box, multimask_output=False,
                                     return_logits=True)
    return logits[0]


def agreement(ours_logits: np.ndarray, theirs_logits: np.ndarray) -> tuple[float, float]:
    ours, theirs = ours_logits > 0, theirs_logits > 0
    union = (ours | theirs).sum()
    iou = float((ours & theirs).sum() / union) if union else 1.0
    return iou, float(np.abs(ours_logits - theirs_logits).max())


@pytest.mark.parametrize("name", list(PROMPTS))
def test_predictor_gives_samPredictors_masks_from_the_image_file(setup, name):
    prompt = PROMPTS[name]
    theirs = official_logits(setup, prompt)
    predictor = SamAdaptPredictor(setup["module"], precision="fp32")
    result = predictor.predict(image=setup["folder"] / "photo.jpg", points=prompt["points"],
                               point_labels=prompt["labels"], boxes=prompt["box"])
    assert result.logits.shape == (1, *IMAGE_HW)
    iou, max_diff = agreement(result.logits[0], theirs)
    assert max_diff < 1e-4, f"{name}: logits differ by up to {max_diff:g} (mask IoU {iou:.4f})"
    np.testing.assert_array_equal(result.masks[0], theirs > 0)
    assert 0.02 < result.masks[0].mean() < 0.98, "a mask with something to get wrong"


def segment_args(setup: dict, prompt: dict, out, precision: str) -> list[str]:
    """`samadapt segment` on the setup's photo with a points+box prompt, as a user types it."""
    args = ["segment", "--ckpt", str(setup["ckpt"]), "--image", str(setup["folder"] / "photo.jpg"), "--out", str(out),
            "--box", ",".join(f"{v:g}" for v in prompt["box"]), "--precision", precision]
    for x, y in prompt["points"]:
        args += ["--point", f"{x:g},{y:g}"]
    return args


def test_segment_command_writes_samPredictors_mask(setup, tmp_path):
    prompt = PROMPTS["points+box"]
    out = tmp_path / "out"
    main(segment_args(setup, prompt, out, "fp32"))
    mask = np.asarray(Image.open(out / "photo_mask.png")) == 255
    np.testing.assert_array_equal(mask, official_logits(setup, prompt) > 0)
    assert json.loads((out / "segment.json").read_text())["images"]


def photo_folder(root: Path, setup) -> Path:
    """A folder dataset (train and val) of the test photo and a rectangular target."""
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        (root / split / "images" / "photo.jpg").write_bytes((setup["folder"] / "photo.jpg").read_bytes())
        mask = np.zeros(IMAGE_HW, dtype=np.uint8)
        mask[100:240, 190:330] = 255
        Image.fromarray(mask).save(root / split / "masks" / "photo.png")
    return root


def test_evaluation_path_gives_samPredictors_logits(setup, tmp_path):
    """A dataset sample through collate, the model and the original-resolution evaluation: SamPredictor's logits
    for the same box (the dataset's tight box of the target, mapped back to the image's pixels)."""
    root = photo_folder(tmp_path / "folder", setup)
    data = FolderDataModule(root=str(root), image_size=1024, box_jitter=0.0, eval_batch_size=1)
    data.setup("test")
    batch = next(iter(data.test_dataloader()[0]))
    module = setup["module"]

    # the encoder input of a training/evaluation batch is SamPredictor's preprocessed image
    frame = module.model.prepare_images(batch["image"], torch.tensor([[660, 1024]]))
    resized = ResizeLongestSide(1024).apply_image(setup["rgb"])
    official_input = setup["official"].preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())
    torch.testing.assert_close(normalize(module.model.sam, frame), official_input, atol=1e-5, rtol=0)

    with torch.no_grad():
        low_res, _ = module(batch, "box")
        sample = eval_samples(module.model.upsample(low_res), batch, "original")[0]
    h, w = IMAGE_HW
    box_in_frame = batch["box"][0].double().numpy()
    box = box_in_frame / np.array([1024 / w, 660 / h, 1024 / w, 660 / h])  # SamPredictor scales it back
    theirs = official_logits(setup, {"points": None, "labels": None, "box": tuple(box)})
    iou, max_diff = agreement(sample.logits.numpy(), theirs)
    assert max_diff < 1e-4, f"logits differ by up to {max_diff:g} (mask IoU {iou:.4f})"


@pytest.mark.slow
def test_vit_b_predictor_matches_samPredictor(tmp_path):
    """ViT-B from segment_anything's own builder, saved and loaded through samadapt: same masks, logits 1e-4."""
    torch.manual_seed(0)
    official = randomise(sam_model_registry["vit_b"](), seed=1).eval()
    sam_path = tmp_path / "sam_vit_b.pth"
    torch.save(official.state_dict(), sam_path)
    rgb = write_image(tmp_path / "photo.jpg")
    module = SamAdaptModule(method="decoder_only", sam_variant="vit_b", sam_checkpoint=str(sam_path))
    predictor = SamAdaptPredictor(module, precision="fp32")
    predictor.set_image(tmp_path / "photo.jpg")
    theirs_predictor = SamPredictor(official)
    theirs_predictor.set_image(rgb)
    for name, prompt in PROMPTS.items():
        points = None if prompt["points"] is None else np.array(prompt["points"])
        labels = None if prompt["labels"] is None else np.array(prompt["labels"])
        box = None if prompt["box"] is None else np.array(prompt["box"])
        theirs, _, _ = theirs_predictor.predict(points, labels, box, multimask_output=False, return_logits=True)
        ours = predictor.predict(points=prompt["points"], point_labels=prompt["labels"], boxes=prompt["box"])
        iou, max_diff = agreement(ours.logits[0], theirs[0])
        print(f"ViT-B {name}: mask IoU {iou:.6f}, max logit difference {max_diff:.2e}")
        assert max_diff < 1e-4 and iou == 1.0


def test_exported_adapter_keeps_the_threshold_rule(setup, tmp_path):
    """threshold 0 on logits (SAM's rule) survives `samadapt export`: the loaded adapter gives SamPredictor's masks
    (before, export dropped threshold_on and 0 was read as a probability: every pixel foreground)."""
    main(["export", "--ckpt", str(setup["ckpt"]), "--out", str(tmp_path / "adapter")])
    config = json.loads((tmp_path / "adapter" / "samadapt_config.json").read_text())
    assert config["module"]["threshold"] == 0.0 and config["module"]["threshold_on"] == "logits"
    predictor = SamAdaptPredictor.from_export(tmp_path / "adapter", sam_checkpoint=setup["sam_path"], precision="fp32")
    prompt = PROMPTS["box"]
    result = predictor.predict(image=setup["folder"] / "photo.jpg", boxes=prompt["box"])
    np.testing.assert_array_equal(result.masks[0], official_logits(setup, prompt) > 0)


def test_a_centre_letterboxed_run_predicts_what_its_evaluation_gives(setup, tmp_path):
    """letterbox: center (the released DIT code's placement): the predictor of such a run places the image, the box
    and the crop of the logits as its evaluation path (dataset, collate, model, original-size logits) does."""
    module = SamAdaptModule(method="decoder_only", sam_variant="small_1024", sam_checkpoint=str(setup["sam_path"]),
                            letterbox="center", eval_prompts=["box"], threshold=0.0, threshold_on="logits")
    save_adapter_checkpoint(module, tmp_path / "centre.ckpt")
    predictor = SamAdaptPredictor.from_checkpoint(tmp_path / "centre.ckpt", precision="fp32")
    assert predictor.letterbox == "center"  # from the checkpoint's hyperparameters
    root = photo_folder(tmp_path / "folder", setup)
    data = FolderDataModule(root=str(root), image_size=1024, box_jitter=0.0, eval_batch_size=1, letterbox="center")
    data.setup("test")
    batch = next(iter(data.test_dataloader()[0]))
    assert batch["content_offset"].tolist() == [[(1024 - 660) // 2, 0]]
    with torch.no_grad():
        low_res, _ = module(batch, "box")
        sample = eval_samples(module.model.upsample(low_res), batch, "original")[0]
    (top, left), (nh, nw) = batch["content_offset"][0].tolist(), batch["content_hw"][0].tolist()
    h, w = IMAGE_HW
    box = (batch["box"][0].double().numpy() - [left, top, left, top]) / np.array([nw / w, nh / h, nw / w, nh / h])
    result = predictor.predict(image=setup["folder"] / "photo.jpg", boxes=tuple(box))
    iou, max_diff = agreement(result.logits[0], sample.logits.numpy())
    assert max_diff < 1e-4, f"logits differ by up to {max_diff:g} (mask IoU {iou:.4f})"
    np.testing.assert_array_equal(result.masks[0], sample.logits.numpy() > 0)
    top_left = official_logits(setup, {"points": None, "labels": None, "box": tuple(box)})
    assert agreement(result.logits[0], top_left)[1] > 1e-2  # the placement does change what the encoder sees
    main(["export", "--ckpt", str(tmp_path / "centre.ckpt"), "--out", str(tmp_path / "adapter")])
    exported = SamAdaptPredictor.from_export(tmp_path / "adapter", sam_checkpoint=setup["sam_path"], precision="fp32")
    assert exported.letterbox == "center"
    np.testing.assert_array_equal(exported.predict(image=setup["folder"] / "photo.jpg", boxes=tuple(box)).masks,
                                  result.masks)
