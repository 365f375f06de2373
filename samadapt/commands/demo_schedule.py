"""Run the demo's stages on worker processes, each as soon as the stages it needs are done.

A tiny model on 2 cores spends much of each step in Python and small kernels, so two one-thread processes side
by side do about 1.4x the work of one two-thread process. Each stage's own output (Lightning's lines, warnings)
goes to <out>/stages/<name>.log; the terminal gets one line when a stage starts and one when it ends, with the
time elapsed and an estimate of the time left.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from samadapt.errors import SamAdaptError


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable  # a module-level function (it crosses into a spawned process)
    args: tuple = ()
    needs: tuple[str, ...] = ()
    what: str = ""  # the progress line's words for it
    expected_s: float = 60.0  # on the 2-core VM with 2 workers; only the estimate of the time left uses it
    threads: int = 0  # torch threads for this stage (0: the worker's share of the cores); more when it runs alone
    log: Path | None = field(default=None, compare=False)


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):  # end with the demo: a killed demo leaves no stage training on
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; Lightning would catch a SIGTERM and go on


@contextmanager
def torch_threads(threads: int):
    """`threads` torch threads inside (0: leave them as they are)."""
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def output_to(log: Path | None):
    """stdout and stderr into `log` inside, Python's and the file descriptors' (C-level writes land there too)."""
    if log is None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    with open(log, "w", buffering=1) as file, redirect_stdout(file), redirect_stderr(file):
        saved = os.dup(1), os.dup(2)
        os.dup2(file.fileno(), 1), os.dup2(file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def run_logged(stage: Stage):
    """A stage with its threads, and its stdout and stderr in its log file (the worker's side)."""
    with torch_threads(stage.threads), output_to(stage.log):
        return stage.run(*stage.args)


def failed(stage: Stage, error: BaseException) -> SamAdaptError:
    where = f"; its output is in {stage.log}" if stage.log else ""
    return SamAdaptError(f"demo stage {stage.name} failed: {error}{where}")


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Progress:
    """The per-stage lines: stage k of n, elapsed, and the expected work left spread over the workers, scaled by
    how this machine's finished stages compared with their expected times."""

    def __init__(self, stages: list[Stage], workers: int, say: Callable[[str], None]):
        self.total, self.workers, self.say = len(stages), workers, say
        self.left = {s.name: s.expected_s for s in stages}
        self.needs = {s.name: s.needs for s in stages}
        self.start = time.perf_counter()
        self.expected_done = self.actual_done = 0.0
        self.running: dict[str, float] = {}
        self.finished = 0

    def estimate_left(self) -> float:
        """The larger of the work left spread over the workers and the longest chain of stages still to run."""
        pace = self.actual_done / self.expected_done if self.expected_done else 1.0
        now = time.perf_counter()
        left = {name: max(seconds - (now - self.running[name]) / pace, 0.0) if name in self.running else seconds
                for name, seconds in self.left.items()}
        chain: dict[str, float] = {}

        def longest(name: str) -> float:  # the stage plus the longest chain of unfinished stages it waits for
            if name not in chain:
                chain[name] = left[name] + max((longest(n) for n in self.needs[name] if n in left), default=0.0)
            return chain[name]

        return pace * max(max(map(longest, left), default=0.0), sum(left.values()) / self.workers)

    def line(self, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        self.say(f"[demo {self.finished}/{self.total} done · {clock(elapsed)} elapsed · about "
                 f"{clock(self.estimate_left())} left] {text}")

    def started(self, stage: Stage) -> None:
        self.running[stage.name] = time.perf_counter()
        self.line(f"{stage.name}: {stage.what or 'started'}")

    def ended(self, stage: Stage, summary: str) -> None:
        seconds = time.perf_counter() - self.running.pop(stage.name)
        self.expected_done += self.left.pop(stage.name)
        self.actual_done += seconds
        self.finished += 1
        self.line(f"{stage.name} done in {seconds:.0f} s{': ' + summary if summary else ''}")


def run_stages(stages: list[Stage], workers: int = 2, say: Callable[[str], None] = print,
               summarise: Callable[[str, object], str] = lambda name, result: "") -> dict[str, object]:
    """Run every stage once its `needs` are done, on `workers` processes (1: in this process); name -> result.
    A stage that fails stops the run: the stages running beside it finish, nothing new starts, its error is raised."""
    names = {s.name for s in stages}
    for stage in stages:
        if missing := set(stage.needs) - names:
            raise ValueError(f"stage {stage.name} needs {sorted(missing)}, which no stage makes")
    progress = Progress(stages, workers, say)
    results: dict[str, object] = {}
    pending = list(stages)
    if workers <= 1:  # in this process, in the order given (each stage's needs come before it)
        for stage in pending:
            progress.started(stage)
            try:
                results[stage.name] = run_logged(stage)
            except Exception as error:
                raise failed(stage, error) from error
            progress.ended(stage, summarise(stage.name, results[stage.name]))
        return results
    running: dict[Future, Stage] = {}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                             initargs=(max(1, (os.cpu_count() or 1) // workers),)) as pool:
        while pending or running:
            for stage in [s for s in pending if set(s.needs) <= results.keys()][: workers - len(running)]:
                pending.remove(stage)
                running[pool.submit(run_logged, stage)] = stage
                progress.started(stage)
            if not running:
                raise RuntimeError(f"stages {[s.name for s in pending]} wait for each other")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                stage = running.pop(future)
                if (error := future.exception()) is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise failed(stage, error) from error
                results[stage.name] = future.result()
                progress.ended(stage, summarise(stage.name, results[stage.name]))
    return results
