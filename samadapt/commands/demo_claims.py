"""What the demo claims, as checks on its test oIoU: each run's report says which held, `demo --full` per seed.

A claim holds when the worst of `better` beats the best of `worse` by at least `margin` (a negative margin: comes
within that much). tests/commands/test_demo_claims.py runs a shortened demo and asserts the claims marked
`short`, the ones that already hold after its few steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from samadapt.commands.compare import mean_std


@dataclass(frozen=True)
class Claim:
    text: str
    better: tuple[str, ...]
    worse: tuple[str, ...]
    margin: float
    short: bool = False  # holds in the shortened demo of the CI test too

    def gap(self, oiou: dict[str, float]) -> float:
        return min(oiou[m] for m in self.better) - max(oiou[m] for m in self.worse)

    def applies(self, oiou: dict[str, float]) -> bool:
        return all(m in oiou for m in self.better + self.worse)


# Shallow fusion's lead over text-blind is not claimed with a margin: at the demo's length it reads its text in
# some stand-ins and stays on the text-blind plateau in others (docs/measurements.md#demo); the table shows its gap.
CLAIMS = (
    Claim("referring: text inside SAM's encoder (E-DIT, L-DIT) beats text-blind (decoder only, LoRA)",
          ("edit", "ldit"), ("decoder_only", "lora"), 0.05),
    Claim("referring: shallow fusion's text in the decoder does no worse than text-blind",
          ("shallow_fusion",), ("decoder_only", "lora"), 0.0),
    Claim("referring: DIT's text inside the encoder (E-DIT, L-DIT) beats shallow fusion's",
          ("edit", "ldit"), ("shallow_fusion",), 0.0),
    Claim("referring: CLIP-Guided Manual beats CLIP-Guided text only", ("clip_guided_manual",),
          ("clip_guided_textonly",), 0.1, short=True),
    # Not in the shortened demo: at 150 steps text only (0.481) is level with a stand-in that reads one click (0.472).
    Claim("referring: CLIP-Guided text only beats CLIP points", ("clip_guided_textonly",), ("clip_points",), 0.05),
    Claim("class-aware: SAM-PTx's class name beats the text-blind parallel adapter", ("sam_ptx",),
          ("parallel_adapter",), 0.1),
    Claim("nested: prompt learning beats frozen SAM's single point", ("plm",), ("frozen_point",), 0.1, short=True),
    Claim("nested: prompt learning comes within 0.05 of decoder fine-tuning (SAM-F)", ("plm",), ("samf",), -0.05,
          short=True),
)


def oiou_of(metrics: dict[str, dict]) -> dict[str, float]:
    return {method: values["oIoU"] for method, values in metrics.items()}


def check_claims(metrics_per_seed: dict[int, dict[str, dict]]) -> list[dict]:
    """Each applicable claim with its gap per seed and whether it held in every one."""
    runs = {seed: oiou_of(metrics) for seed, metrics in metrics_per_seed.items()}
    checked = []
    for claim in CLAIMS:
        if not all(claim.applies(oiou) for oiou in runs.values()):
            continue
        gaps = {seed: claim.gap(oiou) for seed, oiou in runs.items()}
        checked.append({"claim": claim.text, "margin": claim.margin, "gaps": gaps,
                        "held": all(gap >= claim.margin for gap in gaps.values())})
    return checked


def claims_markdown(metrics_per_seed: dict[int, dict[str, dict]]) -> str:
    seeds = list(metrics_per_seed)
    lines = ["| claim | needs | " + " | ".join(f"seed {s}" for s in seeds) + " | held |",
             "|---|---|" + "---|" * len(seeds) + "---|"]
    for c in check_claims(metrics_per_seed):
        needs = f"gap >= {c['margin']:+.2f}"
        gaps = " | ".join(f"{c['gaps'][s]:+.3f}" for s in seeds)
        lines.append(f"| {c['claim']} | {needs} | {gaps} | {'yes' if c['held'] else '**no**'} |")
    return "\n".join(lines)


def seeds_markdown(metrics_per_seed: dict[int, dict[str, dict]], keys=("oIoU", "mIoU", "P@0.5")) -> str:
    """Mean +- std (sample std over seeds) of each method's scores, one row per method."""
    methods = list(next(iter(metrics_per_seed.values())))
    seeds = list(metrics_per_seed)
    lines = [f"| task | method | {' | '.join(keys)} | oIoU per seed ({', '.join(map(str, seeds))}) |",
             "|---|---|" + "---|" * len(keys) + "---|"]
    for method in methods:
        runs = [metrics_per_seed[s][method] for s in seeds]
        cells = [mean_std([r[key] for r in runs]) for key in keys]
        per_seed = ", ".join(f"{r['oIoU']:.3f}" for r in runs)
        lines.append(f"| {runs[0]['data']} | {method} | {' | '.join(cells)} | {per_seed} |")
    return "\n".join(lines)
