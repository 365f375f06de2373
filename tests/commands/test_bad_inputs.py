"""The bad-input matrix, run through the CLI as a user does: one `samadapt: error:` line that says what is wrong,
where, and how to fix it; exit code 2; no checkpoint or temporary file written.

Covered elsewhere, not repeated here: an unknown experiment for `make train` (test_cli.py), the library-level
checkpoint and pickle refusals (test_sam.py, test_data_safe_pickle.py) that the CLI cases below reach.
"""

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samadapt.cli import main
from samadapt.errors import SamAdaptError
from tests.commands.test_cli import configs, tiny_overrides
from tests.training.test_module import make_module, tiny_batch


class RunsCode:
    """Unpickling this calls os.system: the loaders must refuse it without running it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def truncated(src: str, dst: Path) -> str:
    data = Path(src).read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return str(dst)


def not_sam(dst: Path) -> str:
    torch.save({"encoder.weight": torch.zeros(2, 2)}, dst)
    return str(dst)


def runs_code(dst: Path) -> str:
    torch.save({"image_encoder.patch_embed.proj.weight": RunsCode(dst.parent / "pwned")}, dst)
    return str(dst)


def refs_runs_code(dst: Path) -> None:
    dst.write_bytes(pickle.dumps([{"ref_id": RunsCode(dst.parent.parent.parent / "pwned")}]))


def copy_shapes(shapes_root: str, tmp: Path) -> Path:
    root = tmp / "shapes_copy"
    shutil.copytree(shapes_root, root)
    return root


def images_of(root: Path) -> list[Path]:
    return sorted((root / "images" / "train2014").glob("*.jpg"))


def remove_images(root: Path) -> None:
    for path in images_of(root):
        path.unlink()


def corrupt_images(root: Path) -> None:
    for path in images_of(root):
        path.write_bytes(b"\xff\xd8 this is not a jpeg")


# case id -> (prepare(tmp, fixtures) -> (experiment, extra CLI args), words the error line must contain)
def _checkpoint_case(make):
    def prepare(tmp, fx):
        return "demo/shallow_fusion", [f"--model.sam_checkpoint={make(tmp, fx)}"]
    return prepare


def _shapes_case(damage):
    def prepare(tmp, fx):
        root = copy_shapes(fx["shapes"], tmp)
        damage(root)
        return "demo/shallow_fusion", [f"--data.init_args.root={root}"]
    return prepare


def _with_workers(prepare):
    """The same case with 2 DataLoader worker processes (they re-raise errors wrapped in traceback text)."""
    def with_workers(tmp, fx):
        experiment, extra = prepare(tmp, fx)
        return experiment, [*extra, "--data.init_args.num_workers=2"]
    return with_workers


def _refs_runs_code(root: Path) -> None:
    refs_runs_code(root / "shapes" / "refs(unc).p")


def _val_refs_without_sentences(root: Path) -> None:
    from data_modules.datasets.safe_pickle import load_refs

    path = root / "shapes" / "refs(unc).p"
    refs = load_refs(path)
    for ref in refs:
        if ref["split"] == "val":
            ref["sentences"] = []
    path.write_bytes(pickle.dumps(refs))


def _folder_mask_wrong_size(tmp, fx):
    root = tmp / "folder"
    shutil.copytree(fx["layouts"]["data_modules.FolderDataModule"], root)
    for mask in (root / "train" / "masks").glob("*.png"):
        Image.fromarray(np.zeros((10, 13), np.uint8)).save(mask)
    return "folder/decoder_only", [f"--data.init_args.root={root}"]


def _folder_empty_split(tmp, fx):
    root = tmp / "folder"
    shutil.copytree(fx["layouts"]["data_modules.FolderDataModule"], root)
    for path in (root / "val").rglob("*.*"):
        if path.suffix != ".json":
            path.unlink()
    (root / "val" / "texts.json").write_text("{}")
    return "folder/decoder_only", [f"--data.init_args.root={root}"]


def _split_file_missing_file(tmp, fx):
    root = tmp / "coco"
    shutil.copytree(fx["layouts"]["data_modules.CocoLowDataDataModule"], root)
    split = root / "splits/coco/1_512/labeled.txt"
    split.write_text(split.read_text() + "train2017/000000099999.jpg masks/train2017/000000099999.png\n")
    return "coco_1_512/decoder_only", [f"--data.init_args.root={root}"]


def _unwritable_output(tmp, fx):
    blocker = tmp / "a_file"
    blocker.write_text("a regular file, so nothing can be created under it")
    return "demo/shallow_fusion", [f"--trainer.default_root_dir={blocker}/runs"]


CASES = {
    "checkpoint_missing": (_checkpoint_case(lambda tmp, fx: str(tmp / "nope.pth")),
                           ["SAM checkpoint not found", "nope.pth", "sam_checkpoint"]),
    "checkpoint_truncated": (_checkpoint_case(lambda tmp, fx: truncated(fx["sam"], tmp / "cut.pth")),
                             ["cut.pth", "cannot be read as a PyTorch checkpoint"]),
    "checkpoint_not_sam": (_checkpoint_case(lambda tmp, fx: not_sam(tmp / "other.pth")),
                           ["other.pth", "is not a SAM state dict"]),
    "checkpoint_runs_code": (_checkpoint_case(lambda tmp, fx: runs_code(tmp / "evil.pth")),
                             ["evil.pth", "loading it would call", "do not load this file"]),
    "image_missing": (_shapes_case(remove_images), ["image not found", ".jpg", "samadapt synth"]),
    "image_missing_read_by_worker": (_with_workers(_shapes_case(remove_images)), ["image not found", ".jpg"]),
    "image_corrupt_read_by_worker": (_with_workers(_shapes_case(corrupt_images)), ["cannot read image", ".jpg"]),
    "image_corrupt": (_shapes_case(corrupt_images), ["cannot read image", ".jpg", "Re-download"]),
    "refs_pickle_runs_code": (_shapes_case(_refs_runs_code), ["refs(unc).p"]),
    "mask_wrong_size": (_folder_mask_wrong_size, ["mask", "is 13x10 but its image", "resize"]),
    "split_empty_refcoco": (_shapes_case(_val_refs_without_sentences), ["validation set", "is empty",
                                                                         "inspect-data"]),
    "split_empty_folder": (_folder_empty_split, ["no images found in", "val/images"]),
    "split_file_names_missing_file": (_split_file_missing_file, ["labeled.txt", "000000099999.jpg", "line"]),
    "output_folder_unwritable": (_unwritable_output, ["cannot write to output folder", "a_file",
                                                      "--trainer.default_root_dir"]),
}


@pytest.fixture
def fixtures(tiny_sam_checkpoint, shapes_root, tiny_bert, tiny_layouts):
    return {"sam": tiny_sam_checkpoint, "shapes": shapes_root, "bert": tiny_bert, "layouts": tiny_layouts}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_line(case, fixtures, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    prepare, words = CASES[case]
    experiment, extra = prepare(tmp_path, fixtures)
    data_root = next((a.split("=", 1)[1] for a in extra if a.startswith("--data.init_args.root=")), None)
    args = [*tiny_overrides(fixtures["sam"], fixtures["shapes"], fixtures["bert"], steps=1, data_root=data_root),
            "--trainer.logger=false", *[a for a in extra if not a.startswith("--data.init_args.root=")]]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs(experiment), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("samadapt: error:")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.tmp"))  # nothing half-written
    assert not (tmp_path / "pwned").exists()


def test_wrong_variant_checkpoint_says_which_variant_to_set(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path,
                                                           monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert, steps=1), "--model.sam_variant=vit_b"]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs("demo/shallow_fusion"), *args])
    assert exit_info.value.code == 2
    assert "set model.sam_variant=tiny" in capsys.readouterr().err


def test_unknown_yaml_key_is_lightning_cli_error(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path, monkeypatch,
                                                 capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "typo.yaml"
    bad.write_text("model:\n  learning_rate: 0.1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs("demo/shallow_fusion"), "--config", str(bad),
              *tiny_overrides(tiny_sam_checkpoint, shapes_root, tiny_bert)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "Traceback" not in err


# ---- text and geometric prompts, at the model (what a dataset or a caller hands it) ----------------------------
@pytest.fixture(scope="module")
def text_module(tiny_sam_checkpoint, tiny_bert):
    return make_module(tiny_sam_checkpoint, "shallow_fusion", tiny_bert).eval()


TEXTS = {"empty": "", "10k_chars": "x " * 5000, "non_ascii": "la bouteille à gauche, 左边的瓶子 🍾"}


@pytest.mark.parametrize("text", list(TEXTS.values()), ids=list(TEXTS))
def test_any_text_gives_a_prediction(text_module, shapes_root, text):
    """Empty text reaches the model as [CLS][SEP] only (no description); long text is cut at max_length tokens."""
    batch = tiny_batch(shapes_root, size=2)
    batch["text"] = [text, "the red circle"]
    with torch.no_grad():
        probs, valid = text_module.predict_masks(batch, "text")
    assert torch.isfinite(probs).all() and probs.shape[0] == 2
    features = text_module.model.encode_text([text])
    assert features.tokens.shape[1] <= text_module.model.text_encoder.max_length


@pytest.mark.parametrize("prompts,edit,words", [
    ("points", lambda b: b["points"].__setitem__((0, 0), torch.tensor([500.0, 3.0])), ["point (500, 3)", "outside"]),
    ("box", lambda b: b["box"].__setitem__(0, torch.tensor([40.0, 5.0, 10.0, 30.0])), ["x1 < x0", "top-left"]),
])
def test_bad_geometric_prompt_is_refused(tiny_sam_checkpoint, shapes_root, prompts, edit, words):
    module = make_module(tiny_sam_checkpoint, "decoder_only", eval_prompts=prompts)
    batch = tiny_batch(shapes_root, size=2)
    edit(batch)
    with pytest.raises(SamAdaptError) as err:
        module.predict_masks(batch)
    assert batch["sample_id"][0] in str(err.value)
    for word in words:
        assert word in str(err.value)
