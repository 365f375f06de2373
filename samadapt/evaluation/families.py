"""The metric families, named apart from the metrics so that commands list them without loading torch."""

from typing import Literal

MetricFamily = Literal["referring", "sod", "semantic"]
FAMILIES: tuple[str, ...] = ("referring", "sod", "semantic")
