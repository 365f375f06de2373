"""`samadapt serve --ckpt RUN.ckpt [--ckpt OTHER.ckpt ...] [--port 7860] [--host 127.0.0.1] [--examples DIR]`
[--precision auto|bf16|fp32]
or `samadapt serve --demo runs/demo`: every demo method's newest checkpoint, the demo's images as examples.

A local web page to compare trained adapters: choose the runs (two by default; the list gives each run's method,
training prompts and test score), pick or upload an image, type text, click positive and negative points, drag a
box; each chosen run's mask is drawn over the image side by side, with its score, area and a PNG to download.
"""

import argparse
from pathlib import Path

import torch

from samadapt.app.adapter import AppModel
from samadapt.app.server import App, make_server
from samadapt.errors import SamAdaptError
from samadapt.inference.precision import PRECISIONS
from samadapt.inference.segment import IMAGE_SUFFIXES

DEMO_FOLDER = Path("runs/demo")  # `make demo` writes here
DEMO_IMAGES = Path("data/images/train2014")  # the demo's synthetic images, inside a demo folder
NUM_EXAMPLES = 8
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def example_images(folder: Path | None, demo: Path | None) -> list[Path]:
    """The first few images of `folder`; by default the demo's synthetic images, when a demo has run."""
    if folder is None:
        folder = (demo or DEMO_FOLDER) / DEMO_IMAGES
        if not folder.is_dir():
            return []
    if not folder.is_dir():
        raise SamAdaptError(f"--examples {folder} is not a folder; give a folder of images or leave it out")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:NUM_EXAMPLES]
    if not found:
        raise SamAdaptError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in --examples {folder}")
    return found


def demo_checkpoints(demo: Path) -> list[Path]:
    """The newest last.ckpt of each demo run under <demo>/logs/<method>/version_N/checkpoints/."""
    found = []
    for run in sorted(p for p in (demo / "logs").glob("*") if p.is_dir()):
        versions = run.glob("version_*/checkpoints/last.ckpt")
        newest = max(versions, key=lambda p: int(p.parents[1].name.split("_")[-1]), default=None)
        if newest is not None:
            found.append(newest)
    if not found:
        raise SamAdaptError(f"no demo checkpoints under {demo}/logs/<method>/version_*/checkpoints/last.ckpt; "
                            "run `make demo` first (or give --ckpt RUN.ckpt)")
    return found


def run_name(checkpoint: Path) -> str:
    """<run>/version_N/checkpoints/last.ckpt -> <run> (the demo's runs are named by method); else the file's stem."""
    if checkpoint.parent.name == "checkpoints" and len(checkpoint.parents) > 3:
        return checkpoint.parents[2].name
    return checkpoint.stem


def load_models(checkpoints: list[Path], sam_checkpoint: str | None, device: str,
                precision: str = "auto") -> list[AppModel]:
    """One model per checkpoint, named by its run (numbered when two share a name)."""
    names = [run_name(path) for path in checkpoints]
    names = [f"{name} #{i + 1}" if names.count(name) > 1 else name for i, name in enumerate(names)]
    return [AppModel.from_checkpoint(path, name, sam_checkpoint, device, precision)
            for path, name in zip(checkpoints, names, strict=True)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="samadapt serve", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, action="append", default=[],
                        help="a training run's checkpoint (.ckpt); repeat it to offer several runs to compare")
    parser.add_argument("--demo", type=Path, default=None, metavar="DIR",
                        help="also serve every method `samadapt demo --out DIR` trained (make app: runs/demo)")
    parser.add_argument("--port", type=int, default=7860, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: this machine only)")
    parser.add_argument("--examples", type=Path, default=None,
                        help=f"a folder of example images (default: <demo folder>/{DEMO_IMAGES} when it exists)")
    parser.add_argument("--sam-checkpoint", default=None, help="the base SAM, if not at the path used in training")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="bf16 or fp32 (default auto: bf16 where the device computes it natively)")
    args = parser.parse_args(argv)

    if not args.ckpt and args.demo is None:
        parser.error("give --ckpt RUN.ckpt (repeat for side by side) or --demo DIR")
    checkpoints = args.ckpt + (demo_checkpoints(args.demo) if args.demo is not None else [])
    examples = example_images(args.examples, args.demo)
    models = load_models(checkpoints, args.sam_checkpoint, args.device, args.precision)
    try:
        server = make_server(App(models, examples), args.host, args.port)
    except OSError as err:
        raise SamAdaptError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); "
                            "pass another --port (0 picks a free one)") from err
    host, port = server.server_address[:2]
    if args.host not in LOOPBACK:
        print(f"samadapt serve: listening on {args.host}: anyone who can reach this machine can use the page")
    print(f"samadapt serve: http://{'127.0.0.1' if args.host in LOOPBACK else host}:{port}/ "
          f"({', '.join(m.name for m in models)}; {models[0].predictor.precision} on {args.device}; Ctrl+C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
