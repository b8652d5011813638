"""The package's shape: layers import downward only, no import cycles (imports inside functions
count), and the light entry points load no heavy framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hf_forgetting"

# Lowest layer first; a module may import its own layer or a lower one. docs/development.md's Layers section
# shows the same map.
LAYERS = [
    ("files and formats", ["errors", "files", "format", "sources", "data", "hub", "matrix", "modeling", "recipes", "testing", "run_settings"]),
    ("numerics", ["fits", "stats", "scoring", "completion", "analysis", "plots", "embeddings", "training_data", "stage_times", "interpolation"]),
    ("orchestration", ["collect", "collect_summary", "replay", "explorer", "training_guard", "label_positions_loss", "adapt", "monitor", "measure"]),
    ("entry points", ["cli", "__main__", ""]),
]


def _layer(module: str) -> int:
    top = module.removeprefix("hf_forgetting").lstrip(".").split(".")[0]
    for index, (_, names) in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer; add it to LAYERS and the README's layer map")


def _imports() -> dict[str, set[str]]:
    """{module: modules of the package it imports}, from every import statement, at any depth."""
    files = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("hf_forgetting", *path.relative_to(PACKAGE).with_suffix("").parts))
        files[name.removesuffix(".__init__")] = path
    modules = set(files)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
                names = [f"{source}.{alias.name}" for alias in node.names]
                names = [n if resolve(n) == n else source for n in names]
            else:
                continue
            targets |= {r for r in map(resolve, names) if r and r != module}
        edges[module] = targets
    return edges


def test_layers_import_downward_only():
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, targets in _imports().items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges, cycles, seen = _imports(), [], set()

    def reachable(start: str) -> set[str]:
        found, stack = set(), [start]
        while stack:
            for target in edges[stack.pop()]:
                if target not in found:
                    found.add(target)
                    stack.append(target)
        return found

    for module in sorted(edges):
        if module in seen:
            continue
        loop = {other for other in reachable(module) if module in reachable(other)}
        if loop:
            seen |= loop
            cycles.append(sorted(loop))
    assert not cycles, cycles


@pytest.mark.parametrize(
    "code",
    [
        "import hf_forgetting; hf_forgetting.ForgettingMatrix",
        "import hf_forgetting.completion; from hf_forgetting import MFPredictor, low_rank_report",
        "from hf_forgetting.hub import DownloadLimits",
    ],
)
def test_light_entry_points_load_no_framework(code):
    check = "import sys; print(sorted(m for m in ('torch', 'transformers', 'trl', 'gradio', 'peft') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", f"{code}; {check}"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_every_public_name_resolves_lazily():
    import hf_forgetting

    for name in hf_forgetting.__all__:
        assert getattr(hf_forgetting, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hf_forgetting.nope  # noqa: B018
