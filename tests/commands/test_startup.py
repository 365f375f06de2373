"""Verbs that do not train start at once: neither torch nor Lightning loads for their --help."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from samadapt.cli import EXTRA_VERBS

SAMADAPT = Path(sys.executable).parent / "samadapt"
QUICK_VERBS = ["compare", "export", "params", "recipe", "evaluate-masks"]


@pytest.mark.parametrize("verb", [None, *QUICK_VERBS])
def test_help_starts_in_under_two_seconds(verb):
    started = time.perf_counter()
    result = subprocess.run([str(SAMADAPT), *([verb] if verb else []), "--help"], capture_output=True, text=True,
                            timeout=60)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "usage: samadapt" in result.stdout
    assert seconds < 2.0, f"samadapt {verb or ''} --help took {seconds:.1f} s"


def test_the_verb_list_names_every_verb():
    result = subprocess.run([str(SAMADAPT), "--help"], capture_output=True, text=True, timeout=60)
    assert all(verb in result.stdout for verb in ["fit", "validate", "test", "predict", *EXTRA_VERBS])


@pytest.mark.parametrize("verb", QUICK_VERBS)
def test_quick_verbs_import_neither_torch_nor_lightning(verb):
    """What makes them quick, measured without a clock: importing the verb's module and building its --help."""
    module = EXTRA_VERBS[verb][0].split(":")[0]
    code = (f"import sys, importlib, contextlib, io\n"
            f"m = importlib.import_module({module!r})\n"
            f"with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            f"    m.main(['--help'])\n"
            f"print(sorted(n for n in ('torch', 'lightning', 'transformers', 'cv2') if n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
