"""Module-level stage functions for tests/commands/test_demo_schedule.py (a spawned worker imports them)."""

from pathlib import Path

from samadapt.errors import SamAdaptError


def write(path: Path, text: str) -> str:
    print(f"writing {path}")  # goes to the stage's log, not the terminal
    path.write_text(text)
    return text


def append(source: Path, path: Path, text: str) -> str:
    path.write_text(source.read_text() + text)  # fails unless `source`'s stage ran first
    return path.read_text()


def fail(message: str) -> None:
    print("about to fail")
    raise SamAdaptError(message)


def sleep_after_writing_pid(path: Path, seconds: float) -> None:
    import os
    import time

    path.write_text(str(os.getpid()))
    time.sleep(seconds)
