"""Module paths of samadapt 0.1 keep importing for one release.

Saved `config.yaml` files and experiment files name classes by module path (`samadapt.scale.FullShardStrategy`,
`data_modules.class_datamodules.FolderDataModule`). Those modules moved into sub-packages; importing an old path
returns the new module under the old name, with a DeprecationWarning that says where it lives now.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "samadapt.module": "samadapt.training.module",
    "samadapt.losses": "samadapt.training.losses",
    "samadapt.ema": "samadapt.training.ema",
    "samadapt.resume": "samadapt.training.resume",
    "samadapt.checkpoint_io": "samadapt.training.checkpoint_io",
    "samadapt.nonfinite": "samadapt.training.nonfinite",
    "samadapt.scale": "samadapt.training.scale",
    "samadapt.wandb_run": "samadapt.training.wandb_run",
    "samadapt.run_results": "samadapt.training.run_results",
    "samadapt.prediction_panel": "samadapt.training.prediction_panel",
    "samadapt.evaluation": "samadapt.evaluation.protocol",
    "samadapt.metrics": "samadapt.evaluation.metrics",
    "samadapt.metrics_semantic": "samadapt.evaluation.semantic",
    "samadapt.metrics_sod": "samadapt.evaluation.sod",
    "samadapt.evaluate_masks": "samadapt.evaluation.evaluate_masks",
    "samadapt.predictor": "samadapt.inference.predictor",
    "samadapt.segment": "samadapt.inference.segment",
    "samadapt.export": "samadapt.inference.export",
    "samadapt.prompt_checks": "samadapt.sam.prompt_checks",
    "samadapt.compare": "samadapt.commands.compare",
    "samadapt.demo": "samadapt.commands.demo",
    "samadapt.demo_clip": "samadapt.commands.demo_clip",
    "samadapt.params": "samadapt.commands.params",
    "samadapt.bench": "samadapt.commands.bench",
    "data_modules.refcoco": "data_modules.datasets.refcoco",
    "data_modules.coco": "data_modules.datasets.coco",
    "data_modules.ade20k": "data_modules.datasets.ade20k",
    "data_modules.cod10k": "data_modules.datasets.cod10k",
    "data_modules.celebamask": "data_modules.datasets.celebamask",
    "data_modules.folder": "data_modules.datasets.folder",
    "data_modules.semantic": "data_modules.datasets.semantic",
    "data_modules.splits": "data_modules.datasets.splits",
    "data_modules.safe_pickle": "data_modules.datasets.safe_pickle",
    "data_modules.class_names": "data_modules.datasets.class_names",
    "data_modules.images": "data_modules.pipeline.images",
    "data_modules.transforms": "data_modules.pipeline.transforms",
    "data_modules.augment": "data_modules.pipeline.augment",
    "data_modules.prompts": "data_modules.pipeline.prompts",
    "data_modules.collate": "data_modules.pipeline.collate",
    "data_modules.pixel_cache": "data_modules.pipeline.pixel_cache",
    "data_modules.resumable": "data_modules.pipeline.resumable",
    "data_modules.binary": "data_modules.pipeline.binary",
    "data_modules.synth": "data_modules.synthetic.referring",
    "data_modules.synth_classaware": "data_modules.synthetic.classaware",
    "data_modules.nested_shapes": "data_modules.synthetic.nested_shapes",
    "data_modules.inspect": "samadapt.commands.inspect_data",
    "data_modules.prepare": "samadapt.commands.prepare",
    "data_modules.bench": "samadapt.commands.bench_loading",
    "data_modules.base": "data_modules.datamodules",
    "data_modules.class_datamodule": "data_modules.datamodules",
    "data_modules.class_datamodules": "data_modules.datamodules",
    "data_modules.refcoco_datamodule": "data_modules.datamodules",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # already executed under its new name


def install() -> None:
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
