"""The demo's claims: how they are checked, and a shortened demo in which the ones marked `short` must hold."""

import json

import pytest

from samadapt.commands.demo_claims import CLAIMS, check_claims, claims_markdown, seeds_markdown


def scores(**oiou):
    return {method: {"oIoU": value, "mIoU": value, "P@0.5": value, "data": "shapes"} for method, value in oiou.items()}


def test_a_claim_holds_only_when_the_worst_better_method_clears_the_best_worse_one_by_the_margin():
    text_claim = CLAIMS[0]  # E-DIT and L-DIT against decoder only and LoRA, by 0.05
    referring = scores(shallow_fusion=0.30, edit=0.42, ldit=0.38, decoder_only=0.25, lora=0.32)
    assert text_claim.gap({m: v["oIoU"] for m, v in referring.items()}) == pytest.approx(0.38 - 0.32)
    held = check_claims({0: referring, 1: {**referring, "lora": scores(lora=0.34)["lora"]}})[0]
    assert held["gaps"] == {0: pytest.approx(0.06), 1: pytest.approx(0.04)} and not held["held"]  # seed 1 misses 0.05


def test_claims_name_only_the_methods_a_run_has_and_the_seed_table_gives_mean_and_std():
    run = {0: scores(plm=0.9, frozen_point=0.6, samf=0.93), 1: scores(plm=0.8, frozen_point=0.6, samf=0.83)}
    checked = check_claims(run)
    assert [c["claim"] for c in checked] == [c.text for c in CLAIMS if c.better == ("plm",)]
    assert all(c["held"] for c in checked)
    table = claims_markdown(run)
    assert "| +0.300 | +0.200 | yes |" in table
    assert "| shapes | plm | 0.850 ± 0.071 |" in seeds_markdown(run)


SHORT_DEMO = ["--num-train", "400", "--num-eval", "25", "--parts-steps", "100", "--clip-steps", "150", "--steps", "150",
              "--methods", "clip_guided_manual", "clip_guided_textonly", "clip_points", "frozen_point", "plm", "samf"]


def test_a_shortened_demo_shows_the_claims_that_hold_at_its_length(tmp_path):
    """The stand-in SAM at its full 600 steps (every claim rests on it, docs/measurements.md#demo), a smaller data
    set, short CLIP and parts stages and 150 steps per method: the claims marked `short` must hold."""
    from samadapt.cli import main

    main(["demo", "--out", str(tmp_path / "demo"), *SHORT_DEMO])
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    oiou = {method: values["oIoU"] for method, values in metrics.items()}
    short = [claim for claim in CLAIMS if claim.short and claim.applies(oiou)]
    assert len(short) == 3, [claim.text for claim in short]
    for claim in short:
        assert claim.gap(oiou) >= claim.margin, (claim.text, oiou)
