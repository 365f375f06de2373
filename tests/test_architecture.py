"""The package layout holds: dependencies point one way, no import cycle, every module imports on its own."""

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("samadapt", "data_modules")

# Lower layers never import higher ones; within a layer, only a package's own modules import each other.
LAYERS = [
    ("samadapt",),  # the root package and its shared helpers: errors, io, compat, embedding_cache
    ("samadapt.sam", "samadapt.text"),
    ("samadapt.methods",),
    ("samadapt.model", "data_modules"),
    ("samadapt.evaluation",),
    ("samadapt.training",),
    ("samadapt.inference",),
    ("samadapt.commands", "samadapt.app"),
    ("samadapt.cli",),
]
# Shared method plumbing; everything else under samadapt.methods is one method, which imports no other method.
METHOD_SHARED = {"samadapt.methods", "samadapt.methods.base", "samadapt.methods.injection", "samadapt.methods.layers"}


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in it (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets.add(base)
            targets |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {t for t in targets if t in known and t != name}


def layer_of(name: str) -> tuple[int, str]:
    best = (-1, "")
    for index, group in enumerate(LAYERS):
        for prefix in group:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (index, prefix)
    assert best[0] >= 0, f"{name} has no layer: add it to LAYERS"
    return best


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(path, name, set(files)) for name, path in files.items()}


def test_dependencies_point_one_way():
    wrong = []
    for source, targets in graph().items():
        source_layer, source_group = layer_of(source)
        for target in targets:
            target_layer, target_group = layer_of(target)
            if target_layer > source_layer or (target_layer == source_layer and target_group != source_group):
                wrong.append(f"{source} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def method_of(name: str) -> str | None:
    if not name.startswith("samadapt.methods.") or name in METHOD_SHARED:
        return None
    return name.split(".")[2]


def test_no_method_imports_another():
    wrong = [f"{s} -> {t}" for s, targets in graph().items() for t in targets
             if method_of(s) and method_of(t) and method_of(s) != method_of(t)]
    assert not wrong, wrong


def test_no_import_cycle():
    edges = graph()
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    edges = {s: {t for t in ts if not t.startswith(s + ".")} for s, ts in edges.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


ISOLATED_IMPORTS = """
import os, sys, importlib
# the heavy third-party libraries once, then each project module in a fresh child process of its own
import torch, lightning, numpy, PIL.Image, cv2, transformers, open_clip, segment_anything  # noqa
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as err:
            print(f"{name}: {type(err).__name__}: {err}", flush=True)
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own():
    names = sorted(module_files())
    env = {**os.environ, "PYTHONWARNINGS": "error::ImportWarning"}
    result = subprocess.run([sys.executable, "-c", ISOLATED_IMPORTS, *names], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_old_module_paths_still_load_with_a_warning():
    """Saved config.yaml files name classes by their 0.1 module paths; those keep working for one release."""
    code = """
import importlib, warnings
warnings.simplefilter('error', DeprecationWarning)
try:
    importlib.import_module('samadapt.scale')
except DeprecationWarning as w:
    print(w)
warnings.simplefilter('ignore')
from samadapt.scale import FullShardStrategy
from samadapt.training.scale import FullShardStrategy as New
assert FullShardStrategy is New
from data_modules.class_datamodules import FolderDataModule
from data_modules import FolderDataModule as F
assert FolderDataModule is F
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "samadapt.scale moved to samadapt.training.scale" in result.stdout
