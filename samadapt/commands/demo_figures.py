"""examples*.png of the demo: image, ground truth and every method's mask for a few test samples of each task."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samadapt.io import atomic_write


def write_all_examples(panels: dict[str, tuple[str, dict]], out: Path) -> list[Path]:
    """panels: method -> (data folder, example_panel). examples.png for the first data, examples_<folder>.png
    for each other; the methods of one data share its samples."""
    groups: dict[str, dict[str, dict]] = {}
    for method, (folder, panel) in panels.items():
        groups.setdefault(folder, {})[method] = panel
    written = []
    for i, (folder, group) in enumerate(groups.items()):
        written.append(out / ("examples.png" if i == 0 else f"examples_{folder or 'referring'}.png"))
        write_examples(group, written[-1])
    return written


def write_examples(group: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(group.values()))
    rows, cols = len(first["images"]), 2 + len(group)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
    overlay = np.array([1.0, 0.15, 0.6, 0.6])  # magenta, drawn only where the mask is on
    for row in range(rows):
        panels = [("image", None), ("ground truth", first["truths"][row])]
        panels += [(method, panel["masks"][row]) for method, panel in group.items()]
        for col, (title, mask) in enumerate(panels):
            ax = axes[row][col]
            ax.imshow(first["images"][row])
            if (points := first["points"][row]) is not None:  # the click(s) the methods were prompted with
                ax.scatter(points[:, 0], points[:, 1], s=18, c="white", edgecolors="black", linewidths=0.8)
            if mask is not None:
                layer = np.zeros((*mask.shape, 4))
                layer[mask] = overlay
                ax.imshow(layer)
            ax.set_title(title if col else f'"{first["texts"][row]}"', fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
