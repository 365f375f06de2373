"""`make bench`: speed measured side by side in one run, printed as a table and written to runs/bench/results.json.

Everything here runs on the CPU (and on a GPU when one is present); numbers are ratios of things timed in the
same process, one after the other, so they compare on any machine. Each figure carries the goal of issue 9 and
whether it is met. `make bench QUICK=1` (`--quick`) runs a reduced set at 256 px in under 3 minutes (section 2:
the rows with goals and `full`; section 3: one step per mode, timed in its memory process); the goals are set
for the full run (512 / 1024 px), so quick figures are indicative only.

The machine may be shared: absolute seconds move with its load (recorded as `load_average`); interleaved
ratios much less so.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from samadapt.commands.timing import goal, side_by_side
from samadapt.io import atomic_write_json
from samadapt.sam import build_sam
from samadapt.sam.fused_attention import use_fused_attention
from samadapt.sam.loop import encode_images

OFFICIAL_VIT_B = Path("checkpoints/sam_vit_b_01ec64.pth")
# Issue 9's bar for each figure (methods not listed have no goal: their overhead is reported only).
ALL_SECTIONS = "1,2,3,4,5,6,7,8"
METHOD_GOALS = {"sam_ptx": 1.05, "clip_guided": 1.05, "dit_windowed": 1.10}
QUICK_METHODS = {*METHOD_GOALS, "full"}  # QUICK's section 2: the rows with goals, and `full` to show the noise
# Methods that read CLIP, and the CLIP of their experiment files (SAM-PTx: ViT-B/32; CLIP-Guided SAM: ViT-B/16),
# built with random weights: timing needs no training.
CLIP_METHODS = {"sam_ptx": "ViT-B-32", "clip_guided": "ViT-B-16", "clip_points": "ViT-B-16"}


def vit_b(size: int, device: torch.device) -> tuple[torch.nn.Module, str]:
    """Frozen ViT-B at `size`: the official checkpoint when present, else random weights with random rel-pos
    tables (SAM initialises them to zero, which would hide a wrong bias in the output comparison)."""
    torch.manual_seed(0)
    if OFFICIAL_VIT_B.is_file():
        return build_sam("vit_b", str(OFFICIAL_VIT_B), image_size=size).to(device), str(OFFICIAL_VIT_B)
    sam = build_sam("vit_b", None, image_size=size)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.05)
    return sam.to(device), "random (official checkpoint not in checkpoints/)"


# ---- 1. frozen encoder: samadapt against the official segment-anything code ---------------------------
def encoder_vs_official(size: int, device: torch.device, repeats: int, bf16: bool = False) -> dict:
    """The fused encoder against the official one, both in fp32 or both under the same bf16 autocast, beside an
    A/A row (the official encoder against itself: the run's noise). bf16 outputs are compared with fp32 official."""
    official, weights = vit_b(size, device)
    samadapt = copy.deepcopy(official)
    use_fused_attention(samadapt.image_encoder)
    images = torch.rand(1, 3, size, size, device=device) * 255

    def encode(sam):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return encode_images(sam, images).float()

    with torch.no_grad():
        t = side_by_side({"official": lambda: encode(official), "samadapt": lambda: encode(samadapt),
                          "official A/A": lambda: encode(official)}, repeats=repeats)
        reference = encode_images(official, images)
        ours = encode(samadapt)
        diff = (reference - ours).abs().max().item()
        relative = ((reference - ours).norm() / reference.norm()).item()
    speedup = t["official"] / t["samadapt"]
    row = {"precision": "bf16 autocast" if bf16 else "fp32", "official_s": t["official"], "samadapt_s": t["samadapt"],
           "speedup": speedup, "a_a_ratio": t["official"] / t["official A/A"], "max_abs_diff": diff,
           "relative_diff_to_fp32_official": relative, "weights": weights, **goal(speedup, 1.25, at_least=True)}
    if bf16:
        return {**row, "parity_goal": "relative L2 to fp32 official <= 0.02 (bf16)", "parity_met": relative <= 0.02}
    # what fusion cannot change: matmul FLOPs. The official code also multiplies SAM's window padding; the ratio
    # of the two counts is the speed-up of a compute-bound forward from the removed work alone
    flops = {"official": encoder_flops(official, size), "samadapt": encoder_flops(samadapt, size)}
    return {**row, "official_gflop": flops["official"] / 1e9, "samadapt_gflop": flops["samadapt"] / 1e9,
            "flop_ratio": flops["official"] / flops["samadapt"], "parity_goal": "max |diff| <= 1e-4 (fp32)",
            "parity_met": diff <= 1e-4}


# ---- 2. each method's encoder forward over frozen SAM's --------------------------------------------------
def method_variants() -> dict[str, tuple[str, dict]]:
    """Every registered method by name (DIT in both attention layouts), read from the registry at run time so
    methods added later are measured too."""
    from samadapt.methods import METHODS

    variants: dict[str, tuple[str, dict]] = {}
    for name in METHODS:
        if name == "dit":
            variants["dit_windowed"] = ("dit", {"attention": "windowed"})
            variants["dit_global"] = ("dit", {"attention": "global"})
        else:
            variants[name] = (name, {})
    return variants


def method_forward_overheads(size: int, device: torch.device, repeats: int, num_tokens: int = 20,
                            only: set[str] | None = None) -> dict:
    """Encoder forward of each method (ViT-B, `num_tokens` text tokens of width 768) against frozen SAM's,
    timed pairwise and interleaved; both use samadapt's fused attention. Methods that leave the encoder frozen
    and unconditioned run exactly frozen SAM's encoder and are not timed."""
    from samadapt.methods import build_method
    from samadapt.text import CLIPTextEncoder, TextFeatures

    frozen, _ = vit_b(size, device)
    use_fused_attention(frozen.image_encoder)
    images = torch.rand(1, 3, size, size, device=device) * 255
    clips = {name: CLIPTextEncoder(name, pretrained=None).to(device) for name in set(CLIP_METHODS.values())}
    results = {}
    for label, (name, options) in method_variants().items():
        if only and label not in only:
            continue
        target = METHOD_GOALS.get(label)
        try:
            method = build_method(name, options)
            if not method.conditions_encoder:
                results[label] = {"ratio": 1.0, "note": "encoder untouched: frozen SAM's forward",
                                  **(goal(1.0, target, False) if target else {})}
                continue
            # what attach reads of the text encoder: the paper's CLIP, or BERT-base's widths alone
            encoder = clips[CLIP_METHODS[name]] if name in CLIP_METHODS else SimpleNamespace(dim=768, pooled_dim=768)
            width, pooled = encoder.dim, encoder.pooled_dim
            text = TextFeatures(torch.randn(1, num_tokens, width, device=device),
                                torch.ones(1, num_tokens, dtype=torch.bool, device=device),
                                torch.randn(1, pooled, device=device))
            sam = copy.deepcopy(frozen)
            method.attach(sam, encoder)
            sam.to(device)
            method.to(device)
            contenders = {"frozen": lambda: encode_images(frozen, images),
                          "method": lambda m=method, s=sam, x=text: m.encode(s, images, x)}
            if hasattr(method, "clip_vision"):  # CLIP's image features too: given (cached), like the text, and not
                def with_cached_clip(m=method, s=sam, x=text):
                    m.context.image_keys = ["bench-image"]  # the CLIP cache holds it after the warm-up call
                    return m.encode(s, images, x)

                contenders["cached"] = with_cached_clip
            with torch.no_grad():
                t = side_by_side(contenders, repeats=repeats)
        except Exception as err:  # a method this bench cannot drive generically: say so, measure the rest
            results[label] = {"ratio": None, "note": f"not measured: {type(err).__name__}: {err}"[:300],
                              **(goal(None, target, False) if target else {})}
            continue
        rows = {label: ("method", target, None)}  # row label -> (contender, goal, note)
        if "cached" in t:  # the goal is the adapters' cost; the CLIP image forward is reported beside it
            rows = {label: ("cached", target, "CLIP image features given (cached per image key, as from the 2nd "
                                              "epoch)"),
                    f"{label}+clip_image": ("method", None, f"including the CLIP {CLIP_METHODS[name]} image "
                                                            "forward (first epoch, or no cache)")}
        for row_label, (contender, row_goal, note) in rows.items():
            ratio = t[contender] / t["frozen"]
            results[row_label] = {"frozen_s": t["frozen"], "method_s": t[contender], "ratio": ratio,
                                  **(goal(ratio, row_goal, False) if row_goal else {"goal": None, "met": None}),
                                  **({"note": note} if note else {})}
        del sam, method
    return results


# ---- 3. one training step with and without activation checkpointing --------------------------------------
def default_step_method() -> str:
    from samadapt.methods import METHODS

    return "sam_ptx" if "sam_ptx" in METHODS else "dit"


def step_module(method: str, size: int, checkpointing: bool | str, device: torch.device):
    from samadapt.methods import METHODS
    from samadapt.training.module import SamAdaptModule

    options = {"attention": "windowed"} if method == "dit" else {}
    text = ("clip" if method in CLIP_METHODS else "bert") if METHODS[method].uses_text else None
    random_clip = {"model_name": CLIP_METHODS[method], "pretrained": None} if text == "clip" else None
    module = SamAdaptModule(method=method, method_options=options, sam_variant="vit_b", sam_checkpoint=None,
                            image_size=size, text_encoder=text, text_options=random_clip,
                            eval_prompts="text" if text else "points", activation_checkpointing=checkpointing)
    module = module.to(device)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    kinds = [next(iter(module.eval_kinds.values()))]
    return module.train(), optimizer, kinds


def step_batch(batch_size: int, size: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    return {
        "image": torch.rand(batch_size, 3, size, size, device=device) * 255,
        "mask": (torch.rand(batch_size, 1, size, size, device=device) > 0.5).float(),
        "points": torch.rand(batch_size, 1, 2, device=device) * size,
        "point_labels": torch.ones(batch_size, 1, dtype=torch.long, device=device),
        "box": torch.tensor([[10.0, 10.0, size * 0.7, size * 0.7]] * batch_size, device=device),
        "text": ["the red circle on the left", "a large blue square"][:batch_size] * (batch_size // 2 or 1),
        "image_key": [f"image{i}" for i in range(batch_size)],
    }


def train_step(module, optimizer, batch: dict, kinds: list) -> None:
    loss, _ = module.step_loss(batch, kinds)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _rss_bytes(field: str) -> int:
    """VmRSS / VmHWM of this process from /proc (Linux), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_step_memory(method: str, size: int, batch_size: int, checkpointing: bool | str) -> dict:
    """Peak memory of one training step, measured in THIS process (run it in a fresh one: see below).

    CUDA: torch.cuda.max_memory_allocated over the step. CPU: the process's resident-set high-water mark
    (VmHWM), reset just before the step through /proc/self/clear_refs, minus the resident set at that moment;
    glibc is told to return every large block on free (MALLOC_MMAP_THRESHOLD_, set by the caller), so the
    warm-up step's freed activations are not counted as resident. Counts activations, gradients and
    optimizer state, everything the step allocates beyond the model.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module, optimizer, kinds = step_module(method, size, checkpointing, device)
    batch = step_batch(batch_size, size, device)
    train_step(module, optimizer, batch, kinds * batch_size)  # warm-up: optimizer state exists from here on
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        train_step(module, optimizer, batch, kinds * batch_size)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_bytes": peak, "step_bytes": peak - before, "how": "torch.cuda.max_memory_allocated"}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _rss_bytes("VmRSS")
    start = time.perf_counter()
    train_step(module, optimizer, batch, kinds * batch_size)
    seconds = time.perf_counter() - start
    peak = _rss_bytes("VmHWM")
    return {"peak_bytes": peak, "step_bytes": peak - before, "step_s": seconds,
            "how": "process RSS high-water (VmHWM), fresh process"}


def peak_memory_in_subprocess(method: str, size: int, batch_size: int, checkpointing: bool | str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    args = json.dumps([method, size, batch_size, checkpointing])
    done = subprocess.run([sys.executable, "-m", "samadapt.commands.bench", "--peak-memory", args], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


CHECKPOINT_MODES = {"plain": False, "full": "full", "selective": "selective"}


def checkpointing_step(method: str, size: int, batch_size: int, device: torch.device, repeats: int | None) -> dict:
    """Step time without and with activation checkpointing (full, selective; interleaved) and each one's peak
    memory. The goal is met when a mode keeps <= 0.5x the plain step's memory at <= 1.4x its time.
    repeats None (QUICK): the times are the single steps timed in the memory processes (CPU only)."""
    memory = {name: peak_memory_in_subprocess(method, size, batch_size, flag)
              for name, flag in CHECKPOINT_MODES.items()}
    if repeats is None and device.type == "cpu":
        t = {name: memory[name].get("step_s", float("nan")) for name in CHECKPOINT_MODES}
    else:
        batch = step_batch(batch_size, size, device)
        steps = {}
        for name, flag in CHECKPOINT_MODES.items():
            module, optimizer, kinds = step_module(method, size, flag, device)
            steps[name] = lambda m=module, o=optimizer, k=kinds * batch_size: train_step(m, o, batch, k)
        t = side_by_side(steps, repeats=repeats or 1)
        del steps
    modes = {}
    for name in ("full", "selective"):
        mem_ratio = None
        if "step_bytes" in memory[name] and "step_bytes" in memory["plain"]:
            mem_ratio = memory[name]["step_bytes"] / memory["plain"]["step_bytes"]
        time_ratio = t[name] / t["plain"]
        ok = None if mem_ratio is None else (mem_ratio <= 0.5 and time_ratio <= 1.4)
        modes[name] = {"step_s": t[name], "time_ratio": time_ratio, "memory_ratio": mem_ratio, "met": ok}
    met = None if all(m["met"] is None for m in modes.values()) else any(m["met"] for m in modes.values())
    return {"method": method, "image_size": size, "batch_size": batch_size, "plain_s": t["plain"],
            "modes": modes, "memory": memory, "goal": "memory <= 0.5x for time <= 1.4x (either mode)", "met": met}


# ---- 4. image-embedding cache ----------------------------------------------------------------------------
def cache_speedup(size: int, batch_size: int, device: torch.device, repeats: int) -> dict:
    """Training step of a method that leaves the encoder frozen, with the embedding cache warm vs without."""
    from samadapt.methods import METHODS
    from samadapt.model import model_defaults
    from samadapt.training.module import SamAdaptModule

    if "embedding_cache_mb" not in model_defaults():
        return {"note": "not available: no image-embedding cache in this build", "met": None}
    method = "plm" if "plm" in METHODS else "decoder_only"
    batch = step_batch(batch_size, size, device)
    steps = {}
    for name, megabytes in (("uncached", 0.0), ("cached", 256.0)):
        module = SamAdaptModule(method=method, sam_variant="vit_b", sam_checkpoint=None, image_size=size,
                                eval_prompts="points", embedding_cache_mb=megabytes).to(device).train()
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
        kinds = [frozenset({"points"})] * batch_size
        steps[name] = lambda m=module, o=optimizer, k=kinds: train_step(m, o, batch, k)
    t = side_by_side(steps, repeats=repeats)  # the warm-up call fills the cache
    speedup = t["uncached"] / t["cached"]
    return {"method": method, "uncached_s": t["uncached"], "cached_s": t["cached"], "speedup": speedup,
            **goal(speedup, 20.0, at_least=True)}


# ---- 6. achieved GFLOP/s against the machine's matrix-multiply peak -------------------------------------
def encoder_flops(sam, size: int) -> int:
    """FLOPs of one samadapt encoder forward: matmuls and convolutions as torch counts them, plus the fused
    attention kernel (QK^T and PV), which torch's counter does not know on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def sdpa(query, key, value, *args, **kwargs):
        return sdpa_flop_count(query, key, value)

    mapping = {}
    for op in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math"):
        if hasattr(torch.ops.aten, op):
            mapping[getattr(torch.ops.aten, op)] = sdpa
    images = torch.rand(1, 3, size, size, device=next(sam.parameters()).device) * 255
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        encode_images(sam, images)
    return counter.get_total_flops()


def achieved_gflops(size: int, device: torch.device, repeats: int, n: int = 2048) -> dict:
    """Encoder forward GFLOP/s and an n x n fp32 matmul's GFLOP/s (the ceiling), interleaved."""
    sam, _ = vit_b(size, device)
    use_fused_attention(sam.image_encoder)
    flops = encoder_flops(sam, size)
    images = torch.rand(1, 3, size, size, device=device) * 255
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    with torch.no_grad():
        t = side_by_side({"encoder": lambda: encode_images(sam, images), "matmul": lambda: a @ b}, repeats=repeats)
    encoder_rate, peak = flops / t["encoder"] / 1e9, 2 * n**3 / t["matmul"] / 1e9
    fraction = encoder_rate / peak
    return {"image_size": size, "encoder_gflop": flops / 1e9, "encoder_s": t["encoder"],
            "encoder_gflops": encoder_rate, "matmul_peak_gflops": peak, "matmul_n": n, "fraction_of_peak": fraction,
            **goal(fraction, 0.6, at_least=True)}


# ---- the tiny methods' step times (every method, batch 8, 128 px) ------------------------------------------
def method_step_times(device: torch.device) -> dict:
    """One training step (batch 8, tiny SAM, 128 px) of each method, side by side."""
    from samadapt.training.module import SamAdaptModule

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


def _met(row: dict) -> str:
    return {True: "met", False: "NOT met", None: "-"}[row.get("met")]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt.commands.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced set at 256 px, a few minutes")
    parser.add_argument("--methods", default=None, help="section 2: only these rows, e.g. sam_ptx,dit_windowed")
    parser.add_argument("--method", default=None, help="method of the checkpointing step (default: sam_ptx if "
                                                       "registered, else dit windowed)")
    parser.add_argument("--only", default=ALL_SECTIONS,
                        help="sections to run, e.g. 1,3 (7: tiny step times; 8: inference end to end vs SamPredictor "
                             "and HF SamModel, ViT-B 1024 px, not in --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 5, quick 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default torch's; 1 gives steadier ratios on a crowded machine)")
    parser.add_argument("--out", default="runs/bench/results.json")
    parser.add_argument("--peak-memory", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    args = parser.parse_args(argv)
    if args.peak_memory:
        print(json.dumps(peak_step_memory(*json.loads(args.peak_memory))))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick
    wanted = {int(n) for n in args.only.split(",")}
    size, reps = (256, 2) if quick else (512, 5)
    reps = args.repeats or reps
    out = Path(args.out)
    # a partial run (--only) updates the sections it ran and keeps the others' earlier figures
    results = json.loads(out.read_text()) if args.only != ALL_SECTIONS and out.is_file() else {}
    allocator = {k: os.environ[k] for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ}
    results.update({"device": str(device), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "quick": quick, "load_average_start": _load(), "allocator_env": allocator})
    results.setdefault("conditions", {})  # per section: load average and threads when it was measured

    def save(section: int) -> None:  # after every section, so a long run interrupted late keeps its figures
        results["load_average_end"] = _load()
        results["conditions"][str(section)] = {"load_average": results["load_average_end"], "quick": quick,
                                               "threads": torch.get_num_threads(), "allocator_env": allocator}
        atomic_write_json(results, out)

    print(f"bench on {device}, {results['threads']} threads, load average {results['load_average_start']}"
          + (" (QUICK: 256 px, fewer repeats; goals are for the full run)" if quick else ""))

    if 1 in wanted:
        results["encoder"] = {}
        for px in (size,) if quick else (512, 1024):
            for bf16 in (False, True):
                key = f"vit_b@{px}" + (" bf16" if bf16 else "")
                row = results["encoder"][key] = encoder_vs_official(px, device, reps if px < 1024 else 3, bf16)
                work = (f"; GFLOP official {row['official_gflop']:.0f}, samadapt {row['samadapt_gflop']:.0f} "
                        f"(x{row['flop_ratio']:.2f} less work)" if not bf16 else
                        f"; relative L2 to fp32 official {row['relative_diff_to_fp32_official']:.1e}")
                print(f"1 encoder ViT-B@{px} {row['precision']}: official {row['official_s']:.2f} s, samadapt "
                      f"{row['samadapt_s']:.2f} s, x{row['speedup']:.2f} faster (goal {row['goal']}: {_met(row)}), "
                      f"A/A x{row['a_a_ratio']:.2f}; max |diff| {row['max_abs_diff']:.1e}{work}")
                save(1)

    if 2 in wanted:
        only = set(args.methods.split(",")) if args.methods else QUICK_METHODS if quick else None
        rows = method_forward_overheads(size, device, reps, only=only)
        results["method_overhead"] = {**results.get("method_overhead", {}), **rows}
        for label, row in rows.items():
            shown = f"x{row['ratio']:.3f}" if row.get("ratio") is not None else "-"
            print(f"2 method forward {label:22s} {shown:8s} goal {row.get('goal') or '-':8s} {_met(row):8s} "
                  f"{row.get('note', '')}")
        save(2)

    if 3 in wanted:
        method = args.method or default_step_method()
        results["checkpointing"] = row = checkpointing_step(method, size, 2, device, None if quick else 3)
        mem = "; ".join(f"{k} peak +{v['step_bytes'] / 2**20:.0f} MB" if "step_bytes" in v else f"{k} {v}"
                        for k, v in row["memory"].items())
        modes = "; ".join(f"{k} {m['step_s']:.2f} s (time x{m['time_ratio']:.2f}, memory x"
                          + ("-" if m["memory_ratio"] is None else f"{m['memory_ratio']:.2f}") + ")"
                          for k, m in row["modes"].items())
        print(f"3 train step {method}@{size} batch 2: plain {row['plain_s']:.2f} s; {modes}; {mem} "
              f"(goal {row['goal']}: {_met(row)})")
        save(3)

    if 4 in wanted:
        results["embedding_cache"] = row = cache_speedup(size, 2, device, reps)
        if "speedup" in row:
            print(f"4 embedding cache ({row['method']}@{size}): uncached {row['uncached_s']:.3f} s, cached "
                  f"{row['cached_s']:.3f} s, x{row['speedup']:.1f} (goal {row['goal']}: {_met(row)})")
        else:
            print(f"4 embedding cache: {row['note']}")
        save(4)

    if 5 in wanted:
        from samadapt.commands.bench_loading import data_loading_bench

        data = data_loading_bench(num_images=16 if quick else 32)
        for layout, figures in (("folder", data), ("RefCOCO", data["refcoco"])):
            # per worker, best over 0 / 1 workers, against decoding the sample's JPEG + mask; one goal per regime
            for regime, rows in (("cold", figures["workers"]),
                                 ("first_epoch", {w: v["first_epoch"] for w, v in figures["cached"].items()}),
                                 ("later_epochs", {w: v["later_epochs"] for w, v in figures["cached"].items()})):
                best = max(v["ratio_to_decode"] for v in rows.values())
                figures[f"goal_{regime}"] = {**goal(best, 0.8, at_least=True), "ratio": best}
            figures.update(goal(figures["goal_later_epochs"]["ratio"], 0.8, at_least=True))  # with the pixel cache
            print(f"5 data loading, {layout} layout ({figures['source']}, {figures['samples']} samples) at "
                  f"{figures['image_size']} px: decode only {figures['decode_only_per_s']:.0f} samples/s with PIL, "
                  f"{figures['opencv_decode_only_per_s']:.0f}/s with OpenCV (the loader's decoder); cold against "
                  "OpenCV: " + ", ".join(f"{w} workers x{v['ratio_to_opencv_decode']:.2f}"
                                         for w, v in figures["workers"].items()) +
                  "; per worker against PIL: " + "; ".join(
                      f"{w} workers cold {v['per_worker']:.0f}/s (x{v['ratio_to_decode']:.2f}), pixel cache first "
                      f"epoch {c['first_epoch']['per_worker']:.0f}/s (x{c['first_epoch']['ratio_to_decode']:.2f}), "
                      f"later epochs {c['later_epochs']['per_worker']:.0f}/s "
                      f"(x{c['later_epochs']['ratio_to_decode']:.2f})"
                      for (w, v), c in zip(figures["workers"].items(), figures["cached"].values(), strict=True)))
            print(f"  goal per worker {figures['goal']} of decode-only: " + "; ".join(
                f"{name} x{figures[f'goal_{key}']['ratio']:.2f} ({_met(figures[f'goal_{key}'])})"
                for key, name in (("later_epochs", "later epochs (pixel cache)"), ("first_epoch", "first epoch"),
                                  ("cold", "no cache"))))
        data["met"] = bool(data["met"] and data["refcoco"]["met"])  # the goal holds in both layouts
        results["data_loading"] = data
        save(5)

    if 6 in wanted:
        results["gflops"] = row = achieved_gflops(size, device, reps)
        print(f"6 encoder ViT-B@{size}: {row['encoder_gflop']:.0f} GFLOP in {row['encoder_s']:.2f} s = "
              f"{row['encoder_gflops']:.1f} GFLOP/s; fp32 matmul {row['matmul_n']}^3 peak "
              f"{row['matmul_peak_gflops']:.1f} GFLOP/s; {100 * row['fraction_of_peak']:.0f}% "
              f"(goal {row['goal']}: {_met(row)})")
        save(6)

    if 7 in wanted and not quick:
        results["methods"] = method_step_times(device)
        for name, r in results["methods"].items():
            print(f"  tiny train step {name:15s} {r['step_s']:.3f} s  x{r['ratio_to_decoder_only']:.2f}  "
                  f"trainable {r['trainable_params']:,}")
        save(7)
    if 8 in wanted and not quick:
        from samadapt.commands.bench_inference import inference_end_to_end, print_rows

        results["inference"] = inference_end_to_end(device, 3)
        print_rows(results["inference"])
        save(8)
    atomic_write_json(results, out)
    print(f"load average at the end {results.get('load_average_end')}; written {out}")


if __name__ == "__main__":
    main()
