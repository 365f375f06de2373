"""Inference precision: bf16 (bfloat16 autocast) gives fp32's masks up to bf16 rounding, says so in its output, and
"auto" picks bf16 only where the device computes it natively. On the small official-format SAM at 1024 px."""

import json

import numpy as np
import pytest
import torch

from samadapt.cli import main
from samadapt.errors import SamAdaptError
from samadapt.inference import precision as precision_rules
from samadapt.inference.predictor import SamAdaptPredictor
from tests.inference.test_sam_parity import PROMPTS, official_logits, segment_args, setup  # noqa: F401  (setup: shared fixture)

# measured on this SAM: IoU 0.988-0.998 over its 9 masks, scores within 0.002. A hard case: its random weights
# give logits within +-0.11, where bf16's rounding (up to 0.0025 here) flips the pixels nearest 0
MIN_IOU = 0.97


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@pytest.mark.parametrize("name", list(PROMPTS))
def test_bf16_masks_agree_with_fp32(setup, name):  # noqa: F811
    prompt = PROMPTS[name]
    image = setup["folder"] / "photo.jpg"
    results = {}
    for precision in ("fp32", "bf16"):
        predictor = SamAdaptPredictor(setup["module"], precision=precision)
        assert predictor.precision == precision
        results[precision] = predictor.predict(image=image, points=prompt["points"], point_labels=prompt["labels"],
                                               boxes=prompt["box"], multimask_output=True)
    fp32, bf16 = results["fp32"], results["bf16"]
    for field in ("scores", "probs", "logits", "low_res_logits"):
        assert getattr(bf16, field).dtype == np.float32, field
    assert bf16.masks.dtype == bool
    for k in range(3):
        assert iou(bf16.masks[k], fp32.masks[k]) >= MIN_IOU, f"{name} mask {k}"
    np.testing.assert_allclose(bf16.scores, fp32.scores, atol=0.01)
    assert not np.array_equal(bf16.logits, fp32.logits), "bf16 ran: its rounding shows in the logits"
    # the run's rule (logits > 0 here) applies to bf16's float32-cast logits
    np.testing.assert_array_equal(bf16.masks, bf16.logits > 0)


def test_segment_states_bf16_and_its_mask_is_samPredictors_up_to_rounding(setup, tmp_path, capsys):  # noqa: F811
    prompt = PROMPTS["points+box"]
    out = tmp_path / "out"
    main(segment_args(setup, prompt, out, "bf16"))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["precision"] == "bf16"
    assert json.loads((out / "segment.json").read_text())["precision"] == "bf16"
    from PIL import Image

    mask = np.asarray(Image.open(out / "photo_mask.png")) == 255
    assert iou(mask, official_logits(setup, prompt) > 0) >= MIN_IOU


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_picks_bf16_only_where_the_cpu_has_it(setup, monkeypatch, native, expected):  # noqa: F811
    monkeypatch.setattr(precision_rules, "cpu_has_native_bf16", lambda: native)
    assert SamAdaptPredictor(setup["module"]).precision == expected
    assert SamAdaptPredictor(setup["module"], precision="fp32").precision == "fp32"
    assert SamAdaptPredictor(setup["module"], precision="bf16").precision == "bf16"


@pytest.mark.parametrize(("mkldnn", "avx512_bf16", "amx", "expected"), [
    (True, True, False, True), (True, False, True, True),
    (True, False, False, False),  # oneDNN emulates bf16 on plain AVX512: slower than fp32
    (False, True, True, False),
])
def test_cpu_rule(monkeypatch, mkldnn, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: mkldnn)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert precision_rules.cpu_has_native_bf16() is expected
    assert precision_rules.resolve_precision("auto", torch.device("cpu")) == ("bf16" if expected else "fp32")


def test_cuda_rule(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision_rules.resolve_precision("auto", torch.device("cuda")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision_rules.resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_unknown_precision_is_one_clear_message():
    with pytest.raises(SamAdaptError, match="precision 'fp16' is not one of auto, bf16, fp32"):
        precision_rules.resolve_precision("fp16", torch.device("cpu"))
