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


def _fit_case(*extra):
    def prepare(tmp, fx):
        return "demo/shallow_fusion", list(extra)
    return prepare


def zero_bytes(dst: Path) -> str:
    dst.write_bytes(b"")
    return str(dst)


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
    "checkpoint_zero_bytes": (_checkpoint_case(lambda tmp, fx: zero_bytes(tmp / "empty.pth")),  # issue 21 from here
                              ["empty.pth", "is empty (0 bytes)", "model.sam_checkpoint"]),
    "lr_negative": (_fit_case("--model.lr=-0.001"), ["model.lr=-0.001", "positive"]),
    "batch_size_zero": (_fit_case("--data.init_args.batch_size=0"), ["batch_size=0", ">= 1"]),
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


# ---- issue 21: the remaining tracebacks, each now one line and exit 2 ---------------------------------------------
def one_error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("samadapt: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_full_disk_while_saving_a_checkpoint_says_so_and_names_the_intact_one(fixtures, tmp_path, monkeypatch,
                                                                            capsys):
    """ENOSPC on the second checkpoint write (simulated: the write raises it, as a full disk does)."""
    import errno

    real_save, calls = torch.save, []

    def save_until_full(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "save", save_until_full)
    args = [*tiny_overrides(fixtures["sam"], fixtures["shapes"], fixtures["bert"], steps=2), "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path / 'runs'}"]
    line = one_error_line(capsys, ["fit", *configs("demo/shallow_fusion"), *args])
    assert "the disk is full" in line and "could not write" in line and ".ckpt" in line
    intact = [p for p in tmp_path.rglob("*.ckpt")]
    assert len(intact) == 1 and str(intact[0]) in line and "is intact" in line, line
    assert torch.load(intact[0], map_location="cpu", weights_only=False)["state_dict"]  # really intact
    assert not list(tmp_path.rglob("*.tmp"))


def test_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    import errno

    from samadapt.io import atomic_torch_save

    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(SamAdaptError, match=rf"the disk is full .*could not write {path}; the previous {path} is "
                                            r"intact \(resume from it with --ckpt_path\)"):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1} and not list(tmp_path.glob("*.tmp"))


def test_out_naming_a_file_where_a_folder_goes_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("not a folder")
    folder_verbs = {
        "segment": ["segment", "--ckpt", "x.ckpt", "--image", "x.png", "--out", str(a_file)],
        "export": ["export", "--ckpt", "x.ckpt", "--out", str(a_file)],
        "demo": ["demo", "--out", str(a_file)],
        "prepare-demo": ["prepare-demo", "--out", str(a_file)],
        "synth": ["synth", "--out", str(a_file)],
    }
    for verb, argv in folder_verbs.items():
        line = one_error_line(capsys, argv)
        assert f"--out {a_file} is a file" in line and "folder" in line, (verb, line)
    a_folder = tmp_path / "folder"
    a_folder.mkdir()
    file_verbs = {
        "compare": ["compare", str(tmp_path), "--out", str(a_folder)],
        "evaluate-masks": ["evaluate-masks", "--pred", "p", "--gt", "g", "--out", str(a_folder)],
        "inspect-data": ["inspect-data", "--config", "x.yaml", "--out", str(a_folder)],
        "export --merge": ["export", "--merge", "--ckpt", "x.ckpt", "--out", str(a_folder)],
    }
    for verb, argv in file_verbs.items():
        line = one_error_line(capsys, argv)
        assert f"--out {a_folder} is a folder" in line, (verb, line)
    assert a_file.read_text() == "not a folder" and not any(a_folder.iterdir())


@pytest.mark.parametrize("metrics,words", [
    ({"testA": {"oIoU": "0.61"}}, ["'oIoU'", "'testA'", "'0.61'", "not a number"]),
    ({"testA": {"oIoU": 0.6, "mIoU": None}}, ["'mIoU'", "None"]),
    ({"testA": [0.6]}, ["'testA'", "not a mapping"]),
])
def test_compare_with_a_non_numeric_metric_names_file_and_key(tmp_path, capsys, metrics, words):
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"method": "x", "metrics": metrics}))
    line = one_error_line(capsys, ["compare", str(run), "--out", str(tmp_path / "report.md")])
    assert str(run / "results.json") in line
    for word in words:
        assert word in line, line
    assert not (tmp_path / "report.md").exists()
