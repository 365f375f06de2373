"""The demo's stage runner: order by needs, side by side on workers, one line per stage, a failure named."""

import pytest

from samadapt.commands.demo_schedule import Stage, run_stages
from samadapt.errors import SamAdaptError
from tests.commands.demo_stage_fakes import append, fail, write


def chain(tmp_path):
    a, b, c = (tmp_path / name for name in "abc")
    return [
        Stage("c", append, (b, c, "3"), needs=("b",), log=tmp_path / "logs" / "c.log"),
        Stage("a", write, (a, "1"), log=tmp_path / "logs" / "a.log"),
        Stage("b", append, (a, b, "2"), needs=("a",), log=tmp_path / "logs" / "b.log"),
        Stage("d", write, (tmp_path / "d", "4"), log=tmp_path / "logs" / "d.log"),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_stages_run_after_what_they_need_with_one_line_at_each_start_and_end(tmp_path, workers):
    stages = chain(tmp_path)
    if workers == 1:  # one after another in this process: the caller lists them in an order that works
        stages = [stages[1], stages[2], stages[0], stages[3]]
    lines = []
    results = run_stages(stages, workers, say=lines.append, summarise=lambda name, result: f"made {result}")
    assert results == {"a": "1", "b": "12", "c": "123", "d": "4"}
    assert len(lines) == 8 and lines[-1].startswith("[demo 4/4 done")
    assert all("elapsed" in line and "left]" in line for line in lines)
    assert sum(line.endswith("made 123") and "] c done in" in line for line in lines) == 1
    assert (tmp_path / "logs" / "a.log").read_text() == f"writing {tmp_path / 'a'}\n"  # its output, not ours


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failed_stage_stops_the_run_naming_the_stage_and_its_log(tmp_path, workers):
    stages = [Stage("broken", fail, ("the disk is full",), log=tmp_path / "broken.log"),
              Stage("after", write, (tmp_path / "after", "x"), needs=("broken",))]
    with pytest.raises(SamAdaptError, match=r"stage broken failed: the disk is full; its output is in .*broken.log"):
        run_stages(stages, workers, say=lambda line: None)
    assert not (tmp_path / "after").exists()
    assert "about to fail" in (tmp_path / "broken.log").read_text()


def test_a_need_no_stage_makes_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="stage b needs \\['nothing'\\]"):
        run_stages([Stage("a", write, (tmp_path / "a", "1")),
                    Stage("b", write, (tmp_path / "b", "2"), needs=("nothing",))])
    assert not (tmp_path / "a").exists()


def test_killing_the_demo_ends_its_workers(tmp_path):
    """A killed demo (SIGKILL: nothing of it runs any more) leaves no stage training on in the background."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    script = ("from pathlib import Path\n"
              "from samadapt.commands.demo_schedule import Stage, run_stages\n"
              "from tests.commands.demo_stage_fakes import sleep_after_writing_pid\n"
              "if __name__ == '__main__':\n"
              f"    run_stages([Stage('long', sleep_after_writing_pid, (Path({str(pid_file)!r}), 120))], workers=2)\n")
    (tmp_path / "demo_like.py").write_text(script)
    demo = subprocess.Popen([sys.executable, str(tmp_path / "demo_like.py")], cwd=os.getcwd(),
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    worker = int(pid_file.read_text())
    demo.send_signal(signal.SIGKILL)
    demo.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the demo's worker outlived it")
