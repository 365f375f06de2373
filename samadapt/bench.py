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


def side_by_side(fns: dict, repeats: int = 5) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved (A, B, A, B, ...) after one warm-up each,
    so a busy moment of the machine hits every contender alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def encoder_overhead(variant: str, size: int, device: torch.device) -> dict:
    """Frozen encoder forward: the official blocks vs the same weights behind samadapt's BlockWrapper."""
    torch.manual_seed(0)
    official = build_sam(variant, None, image_size=size).to(device)
    wrapped = copy.deepcopy(official)
    wrap_encoder_blocks(wrapped.image_encoder, lambda i, blk: BlockWrapper(blk, {}))
    images = torch.rand(1, 3, size, size, device=device) * 255
    with torch.no_grad():
        t = side_by_side({"official": lambda: encode_images(official, images),
                          "wrapped": lambda: encode_images(wrapped, images)}, repeats=3)
        t_official, t_wrapped = t["official"], t["wrapped"]
        diff = (encode_images(official, images) - encode_images(wrapped, images)).abs().max().item()
    return {"official_s": t_official, "samadapt_s": t_wrapped, "ratio": t_wrapped / t_official, "max_abs_diff": diff}


def train_step(module, optimizer, batch: dict, kinds: list) -> None:
    loss, _ = module.step_loss(batch, kinds)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def method_step_times(device: torch.device) -> dict:
    """One training step (batch 8, tiny SAM, 128 px) of each method, side by side."""
    from samadapt.module import SamAdaptModule

    torch.manual_seed(0)
    batch = {
        "image": torch.rand(8, 3, 128, 128, device=device) * 255,
        "mask": (torch.rand(8, 1, 128, 128, device=device) > 0.5).float(),
        "points": torch.rand(8, 1, 2, device=device) * 128,
        "point_labels": torch.ones(8, 1, dtype=torch.long, device=device),
        "box": torch.tensor([[10.0, 10.0, 90.0, 90.0]] * 8, device=device),
        "text": [f"the {c} circle on the left" for c in ("red", "green", "blue", "yellow")] * 2,
    }
    setups = {
        "decoder_only": ("decoder_only", {}, None, "none"),
        "shallow_fusion": ("shallow_fusion", {}, "bert", "text"),
        "edit": ("dit", {"mode": "e2e"}, "bert", "text"),
        "ldit": ("dit", {"mode": "layerwise"}, "bert", "text"),
    }
    steps, counts = {}, {}
    for name, (method, options, text, prompts) in setups.items():
        module = SamAdaptModule(method=method, method_options=options, sam_variant="tiny", sam_checkpoint=None,
                                text_encoder=text, eval_prompts=prompts).to(device)
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
        kinds = [next(iter(module.eval_kinds.values()))] * 8
        steps[name] = lambda m=module, o=optimizer, k=kinds: train_step(m, o, batch, k)
        counts[name] = module.parameter_counts()
    seconds = side_by_side(steps, repeats=5)
    results = {name: {"step_s": seconds[name], **counts[name]} for name in setups}
    base = results["decoder_only"]["step_s"]
    for values in results.values():
        values["ratio_to_decoder_only"] = values["step_s"] / base
    return results


def dit_forward_overhead(size: int, device: torch.device, num_tokens: int = 20) -> dict:
    """L-DIT's encoder forward over frozen SAM's (ViT-B), 20 text tokens, both attention layouts."""
    from samadapt.methods import build_method
    from samadapt.text import TextFeatures

    torch.manual_seed(0)
    frozen = build_sam("vit_b", None, image_size=size).to(device)
    images = torch.rand(1, 3, size, size, device=device) * 255
    text = TextFeatures(torch.randn(1, num_tokens, 768, device=device),
                        torch.ones(1, num_tokens, dtype=torch.bool, device=device), torch.randn(1, 768, device=device))
    contenders = {"frozen": lambda: encode_images(frozen, images)}
    for attention in ("global", "windowed"):
        sam = copy.deepcopy(frozen)
        method = build_method("dit", {"attention": attention})
        method.attach(sam, 768)
        sam.to(device)
        method.to(device)
        contenders[attention] = lambda m=method, s=sam: m.encode(s, images, text)
    with torch.no_grad():
        seconds = side_by_side(contenders, repeats=3)
    results = {"frozen_s": seconds["frozen"]}
    for attention in ("global", "windowed"):
        results[attention] = {"seconds": seconds[attention], "ratio": seconds[attention] / seconds["frozen"]}
    return results


CACHE_GOAL = 20.0  # the goal: at least 20x the training steps per second with the cache warm


def cache_speedup(device: torch.device, batch_size: int = 4, repeats: int = 3) -> dict:
    """PLM (+PMM) training steps per second at ViT-B 512 px: every image encoded vs embeddings from the warm cache.

    One module, so the same weights: a batch without `image_key` takes the uncached path.
    """
    from samadapt.module import SamAdaptModule

    torch.manual_seed(0)
    module = SamAdaptModule(method="plm", method_options={"pmm": True}, sam_variant="vit_b", sam_checkpoint=None,
                            image_size=512, eval_prompts="points", embedding_cache_mb=1024,
                            loss_weights={"focal": 20.0, "dice": 1.0, "iou": 1.0, "pmm": 1.0}).to(device)
    yy, xx = torch.meshgrid(torch.arange(512.0), torch.arange(512.0), indexing="ij")
    disc = (((xx - 256) ** 2 + (yy - 256) ** 2) < 120**2).float()
    plain = {
        "image": torch.rand(batch_size, 3, 512, 512, device=device) * 255,
        "mask": disc.expand(batch_size, 1, 512, 512).to(device),
        "points": torch.full((batch_size, 1, 2), 256.0, device=device),
        "point_labels": torch.ones(batch_size, 1, dtype=torch.long, device=device),
        "box": torch.tensor([[136.0, 136.0, 376.0, 376.0]] * batch_size, device=device),
        "text": [""] * batch_size,
    }
    cached = {**plain, "image_key": [f"bench-{i}" for i in range(batch_size)]}  # the warm-up call fills the cache
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    kinds = [frozenset({"points"})] * batch_size
    seconds = side_by_side({"no_cache": lambda: train_step(module, optimizer, plain, kinds),
                            "cache_warm": lambda: train_step(module, optimizer, cached, kinds)}, repeats=repeats)
    speedup = seconds["no_cache"] / seconds["cache_warm"]
    return {"batch_size": batch_size, "no_cache_steps_per_s": 1 / seconds["no_cache"],
            "cache_warm_steps_per_s": 1 / seconds["cache_warm"], "speedup": speedup, "goal": CACHE_GOAL,
            "goal_met": speedup >= CACHE_GOAL, "trainable_params": module.parameter_counts()["trainable_params"]}


def print_cache_speedup(row: dict) -> None:
    print(f"PLM+PMM training, ViT-B 512 px, batch {row['batch_size']}: no cache {row['no_cache_steps_per_s']:.3f} "
          f"steps/s, cache warm {row['cache_warm_steps_per_s']:.3f} steps/s, speed-up x{row['speedup']:.1f} "
          f"(goal >= {row['goal']:.0f}x: {'met' if row['goal_met'] else 'NOT met'})")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m samadapt.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["all", "cache"], default="all", help="run one benchmark alone")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller batch")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"device": str(device), "threads": torch.get_num_threads(), "encoder": {}, "methods": {}}
    results["cache_vit_b_512"] = cache = cache_speedup(device, *((2, 2) if args.quick else (4, 3)))
    print_cache_speedup(cache)
    if args.only == "cache":
        out = Path("runs/bench/results_cache.json")
        atomic_write_json(results, out)
        print(f"written {out}")
        return
    for variant, size in (("tiny", 128), ("vit_b", 512)):
        results["encoder"][f"{variant}@{size}"] = row = encoder_overhead(variant, size, device)
        print(f"encoder {variant}@{size}: official {row['official_s']:.3f} s, samadapt {row['samadapt_s']:.3f} s, "
              f"ratio {row['ratio']:.2f}, max |diff| {row['max_abs_diff']:.1e}")
    results["ldit_vit_b_512"] = dit = dit_forward_overhead(512, device)
    print(f"L-DIT encoder forward, ViT-B 512 px, 20 text tokens: frozen {dit['frozen_s']:.3f} s; "
          + "; ".join(f"{a} {dit[a]['seconds']:.3f} s (x{dit[a]['ratio']:.3f})" for a in ("global", "windowed")))
    results["methods"] = method_step_times(device)
    from data_modules.bench import data_loading_bench

    results["data_loading"] = data = data_loading_bench()
    print(f"data loading at {data['image_size']} px: decode only {data['decode_only_per_s']:.0f} images/s; "
          + "; ".join(f"{w} workers {v['samples_per_s']:.0f}/s (x{v['ratio_to_decode']:.2f})"
                      for w, v in data["workers"].items()))
    for method, row in results["methods"].items():
        print(f"train step {method:15s} {row['step_s']:.3f} s  x{row['ratio_to_decoder_only']:.2f}  "
              f"trainable {row['trainable_params']:,}")
    out = Path("runs/bench/results.json")
    atomic_write_json(results, out)
    print(f"written {out}")


if __name__ == "__main__":
    main()
