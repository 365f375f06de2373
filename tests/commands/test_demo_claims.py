"""The demo's claims: how they are checked, and a shortened demo in which the ones marked `short` must hold."""

import json

import pytest

from samadapt.commands.demo_claims import CLAIMS, check_claims, claims_markdown, seeds_markdown


def scores(**oiou):
    return {method: {"oIoU": value, "mIoU": value, "P@0.5": value, "data": "shapes"} for method, value in oiou.items()}


def test_a_claim_holds_only_when_the_worst_better_method_clears_the_best_worse_one_by_the_margin():
    text_claim = CLAIMS[0]
    referring = scores(shallow_fusion=0.40, edit=0.42, ldit=0.38, decoder_only=0.25, lora=0.32)
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
