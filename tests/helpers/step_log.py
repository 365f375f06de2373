"""Test helper loaded by training subprocesses: one JSON line per optimizer step (global step, exact loss)."""

import json

import lightning as L


class StepLog(L.Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        with open(self.path, "a") as log:  # appended: a resumed run adds the steps it (re)does
            log.write(json.dumps({"step": trainer.global_step - 1, "loss": float(loss).hex()}) + "\n")


def read_steps(path) -> list[dict]:
    with open(path) as log:
        return [json.loads(line) for line in log]
