"""`make bench`: speed measured side by side in one run, printed as a table and written to runs/bench/results.json.

Everything here runs on the CPU (and on a GPU when one is present); numbers are ratios of things timed in the
same process, one after the other, so they compare on any machine.
"""

import copy
import time
from pathlib import Path

import torch

from samadapt.io import atomic_write_json
from samadapt.methods.injection import BlockWrapper, wrap_encoder_blocks
from samadapt.sam import build_sam
from samadapt.sam.loop import encode_images


def timed(fn, repeats: int = 3) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def encoder_overhead(variant: str, size: int, device: torch.device) -> dict:
    """Frozen encoder forward: the official blocks vs the same weights behind samadapt's BlockWrapper."""
    torch.manual_seed(0)
    official = build_sam(variant, None, image_size=size).to(device)
    wrapped = copy.deepcopy(official)
    wrap_encoder_blocks(wrapped.image_encoder, lambda i, blk: BlockWrapper(blk, {}))
    images = torch.rand(1, 3, size, size, device=device) * 255
    with torch.no_grad():
        t_official = timed(lambda: encode_images(official, images))
        t_wrapped = timed(lambda: encode_images(wrapped, images))
        diff = (encode_images(official, images) - encode_images(wrapped, images)).abs().max().item()
    return {"official_s": t_official, "samadapt_s": t_wrapped, "ratio": t_wrapped / t_official, "max_abs_diff": diff}


def method_step_times(device: torch.device) -> dict:
    """One training step (batch 8, tiny SAM, 128 px) of each decoder-side method, side by side."""
    from samadapt.module import SamAdaptModule

    torch.manual_seed(0)
    batch = {
        "image": torch.rand(8, 3, 128, 128, device=device) * 255,
        "mask": (torch.rand(8, 1, 128, 128, device=device) > 0.5).float(),
        "points": torch.rand(8, 1, 2, device=device) * 128,
        "point_labels": torch.ones(8, 1, dtype=torch.long, device=device),
        "box": torch.tensor([[10.0, 10.0, 90.0, 90.0]] * 8, device=device),
        "text": [f"the {c} circle" for c in ("red", "green", "blue", "yellow")] * 2,
    }
    results = {}
    for method, text, kinds in (("decoder_only", None, "none"), ("shallow_fusion", "bert", "text")):
        module = SamAdaptModule(method=method, sam_variant="tiny", sam_checkpoint=None, text_encoder=text,
                                eval_prompts=kinds).to(device)
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)

        def step(module=module, optimizer=optimizer, kinds=module.eval_kinds):
            loss, _ = module.step_loss(batch, kinds)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        results[method] = {"step_s": timed(step, repeats=5), **module.parameter_counts()}
    base = results["decoder_only"]["step_s"]
    for values in results.values():
        values["ratio_to_decoder_only"] = values["step_s"] / base
    return results


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"device": str(device), "threads": torch.get_num_threads(), "encoder": {}, "methods": {}}
    for variant, size in (("tiny", 128), ("vit_b", 512)):
        results["encoder"][f"{variant}@{size}"] = row = encoder_overhead(variant, size, device)
        print(f"encoder {variant}@{size}: official {row['official_s']:.3f} s, samadapt {row['samadapt_s']:.3f} s, "
              f"ratio {row['ratio']:.2f}, max |diff| {row['max_abs_diff']:.1e}")
    results["methods"] = method_step_times(device)
    for method, row in results["methods"].items():
        print(f"train step {method:15s} {row['step_s']:.3f} s  x{row['ratio_to_decoder_only']:.2f}  "
              f"trainable {row['trainable_params']:,}")
    out = Path("runs/bench/results.json")
    atomic_write_json(results, out)
    print(f"written {out}")


if __name__ == "__main__":
    main()
