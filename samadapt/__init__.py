"""samadapt: parameter-efficient, text-guided fine-tuning of SAM on PyTorch Lightning."""

from samadapt import compat

compat.install()  # old module paths (saved configs) still import
