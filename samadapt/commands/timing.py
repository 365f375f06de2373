"""Timing rules shared by the bench sections: interleaved side-by-side calls, GPU-synchronised, and goals."""

import time

import torch


def side_by_side(fns: dict, repeats: int = 5) -> dict[str, float]:
    """Fastest seconds per call of each function, after one warm-up each, calls interleaved in alternating order
    (A B, B A, A B, ...) so neither contender always runs second.

    The fastest, not the median: on a shared (virtual) machine other work only ever adds time, so the minimum
    is the steadiest estimate of what the code itself costs (timeit's reasoning)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            synchronize()
            start = time.perf_counter()
            fns[name]()
            synchronize()  # a GPU returns before its kernels finish: time the work, not its launch
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def goal(value: float | None, target: float, at_least: bool) -> dict:
    """The goal as text and whether `value` meets it (None: not measured)."""
    met = None if value is None else (value >= target if at_least else value <= target)
    return {"goal": f"{'>=' if at_least else '<='} {target:g}", "met": met}
