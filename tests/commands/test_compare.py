"""`samadapt compare` on two demo-sized runs: the table carries every run, split and metric; the chart is a PNG."""

import json

import pytest
from PIL import Image

from samadapt.cli import main


def test_compare_two_runs(trained_runs, tmp_path, capsys):
    runs = {name: json.loads((folder / "results.json").read_text()) for name, (folder, _) in trained_runs.items()}
    assert runs["shallow"]["method"] == "shallow_fusion" and runs["ldit"]["method"] == "dit-layerwise"
    assert set(runs["shallow"]["metrics"]) == {"testA", "all"}
    assert runs["ldit"]["trainable_params"] > 0 and runs["ldit"]["peak_memory_mb"] > 0

    out = tmp_path / "report.md"
    main(["compare", *(str(folder) for folder, _ in trained_runs.values()), "--metric", "mIoU", "--out", str(out)])
    report = out.read_text()
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:5] == ["run", "method", "dataset", "trainable params", "split"]
    assert {"oIoU", "mIoU", "P@0.5", "P@0.9"} <= set(header)
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[1:]]
    assert len(rows) == 4  # 2 runs x (testA, all)
    for row in rows:
        results = next(r for r in runs.values() if r["method"] == row["method"])
        assert row["trainable params"] == f"{results['trainable_params']:,}"
        assert float(row["oIoU"]) == pytest.approx(results["metrics"][row["split"]]["oIoU"], abs=5e-4)
    chart = Image.open(out.with_suffix(".png"))
    assert chart.format == "PNG" and chart.size[0] > 300
    assert "report.png" in report


def test_compare_finds_runs_below_a_folder_and_refuses_bad_input(trained_runs, tmp_path, capsys):
    parent = next(iter(trained_runs.values()))[0].parent.parent  # .../logs: both runs below it
    main(["compare", str(parent), "--out", str(tmp_path / "r.md")])
    assert (tmp_path / "r.md").read_text().count("| testA |") == 2

    for args, message in [([str(tmp_path / "nope")], "run folder not found"),
                          ([str(tmp_path)], "no results.json"),
                          ([str(parent), "--metric", "F1"], "metric 'F1' is in none of the runs")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", *args, "--out", str(tmp_path / "x.md")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists()


def test_compare_pools_runs_that_differ_only_in_seed(tiny_sam_checkpoint, shapes_root, tiny_bert, tmp_path):
    """Two seeds of one configuration and one other configuration: the seeds share config_id and are pooled
    as mean ± std (sample std); the other run is not pooled with them."""
    import statistics

    from tests.helpers.tiny_runs import fit_and_test

    folders = [fit_and_test("demo/shallow_fusion", tmp_path, f"seed{seed}", tiny_sam_checkpoint, shapes_root,
                            tiny_bert, extra=(f"--seed_everything={seed}",))[0] for seed in (1, 2)]
    other = fit_and_test("demo/shallow_fusion", tmp_path, "lr", tiny_sam_checkpoint, shapes_root, tiny_bert,
                         extra=("--seed_everything=1", "--model.lr=0.01"))[0]
    results = [json.loads((folder / "results.json").read_text()) for folder in folders]
    other_results = json.loads((other / "results.json").read_text())
    assert [r["seed"] for r in results] == [1, 2]
    assert results[0]["config_id"] == results[1]["config_id"] != other_results["config_id"]

    out = tmp_path / "report.md"
    main(["compare", *(str(f) for f in (*folders, other)), "--out", str(out)])
    pooled = out.read_text().split("## Over seeds (mean ± std)")[1]
    rows = [line for line in pooled.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 2  # one configuration x (testA, all)
    cells = {c.strip() for c in rows[1].strip("|").split("|")}
    values = [r["metrics"]["all"]["oIoU"] for r in results]
    assert f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" in cells
    assert "1, 2" in cells and "all" in cells


def test_compare_without_repeated_seeds_has_no_seed_table(trained_runs, tmp_path):
    out = tmp_path / "report.md"
    main(["compare", *(str(folder) for folder, _ in trained_runs.values()), "--out", str(out)])
    assert "Over seeds" not in out.read_text()
