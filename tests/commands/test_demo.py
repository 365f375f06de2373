"""`samadapt demo` end to end on a few images and steps: every artefact it promises, in its format."""

import json

import torch

from samadapt.cli import main
from samadapt.sam import build_sam, load_sam_state_dict
from samadapt.sam.checkpoint import identify_variant


def test_demo_writes_metrics_report_and_examples(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo"
    main(["demo", "--out", str(out), "--num-train", "12", "--num-eval", "3", "--pretrain-steps", "3",
          "--clip-steps", "2", "--steps", "3"])
    lines = capsys.readouterr().out.splitlines()
    from samadapt.commands.demo import DEMO_METHODS

    # a line when each stage starts and one when it ends, each with the time elapsed and left; nothing else of theirs
    stage_lines = [line for line in lines if line.startswith("[demo ")]
    stages = 3 + 3 + len(DEMO_METHODS)  # data, stand-ins, methods
    assert len(stage_lines) == 2 * stages and stage_lines[-1].startswith(f"[demo {stages}/{stages} done")
    assert all("elapsed · about" in line for line in stage_lines)
    assert not any("Epoch" in line or "[train]" in line for line in lines)
    assert "[train] step" in (out / "stages" / "shallow_fusion.log").read_text()  # Lightning's lines went there

    # the stand-in SAMs are official-format files that load like a real checkpoint; the nested-shapes task's one
    # is the first trained on (its weights moved)
    states = {name: load_sam_state_dict(out / name) for name in ("tiny_sam.pth", "tiny_sam_parts.pth")}
    for name, state in states.items():
        assert identify_variant(state) == "tiny"
        build_sam("tiny", str(out / name))
    assert states["tiny_sam.pth"].keys() == states["tiny_sam_parts.pth"].keys()
    assert any(not torch.equal(v, states["tiny_sam_parts.pth"][k]) for k, v in states["tiny_sam.pth"].items())
    assert len(list((out / "data" / "nested_parts" / "train" / "masks").glob("*_1.png"))) == 12  # a part per scene

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == set(DEMO_METHODS) >= {"decoder_only", "shallow_fusion", "ldit", "edit"}
    for method, values in metrics.items():
        assert {"oIoU", "mIoU", "P@0.5", "P@0.7", "P@0.9", "trainable_params", "train_seconds"} <= set(values)
        assert all(0.0 <= values[k] <= 1.0 for k in ("oIoU", "mIoU", "P@0.5", "P@0.7", "P@0.9")), method
        if method == "clip_points":  # a pipeline: evaluated, nothing trained
            assert values["trainable_params"] == 0
        else:
            assert values["trainable_params"] > 0 and (values["train_seconds"] > 0 or method == "frozen_point")
    assert metrics["shallow_fusion"]["trainable_params"] > metrics["decoder_only"]["trainable_params"]

    report = (out / "report.md").read_text()
    assert all(f"| {method} |" in report for method in DEMO_METHODS)
    assert "## The demo's claims" in report and "| nested: prompt learning beats frozen SAM's single point |" in report
    assert (out / "examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "examples_nested.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["frozen_point"]["trainable_params"] == metrics["samf"]["trainable_params"]  # same decoder
    assert (out / "tiny_clip.pt").exists()  # the stand-in CLIP, next to the stand-in SAM
    assert not list(tmp_path.glob("runs"))  # the demo writes only under --out


def test_synth_verb_writes_refcoco_layout(tmp_path):
    main(["synth", "--out", str(tmp_path), "--num-train", "4", "--num-eval", "2"])
    from data_modules import load_refs

    assert (tmp_path / "shapes" / "instances.json").exists()
    splits = {ref["split"] for ref in load_refs(tmp_path / "shapes" / "refs(unc).p")}
    assert splits == {"train", "val", "testA", "testB"}
    assert len(list((tmp_path / "images" / "train2014").glob("COCO_train2014_*.jpg"))) == 4 + 3 * 2
