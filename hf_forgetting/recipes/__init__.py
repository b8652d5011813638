"""Recipes that ship inside the package: the embedded offline default's (``hf-forgetting demo``).

``recipes/smollm2-135m-instruct`` at the top of the repository is a link to the folder here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EMBEDDED_RECIPES = "smollm2-135m-instruct"


def recipe_path(*parts: str) -> Path:
    """The path of a packaged recipe file, e.g. ``recipe_path("collect", "config_demo.yaml")``."""
    path = Path(str(resources.files(__name__).joinpath(EMBEDDED_RECIPES, *parts)))
    if not path.is_file():
        raise FileNotFoundError(f"No packaged recipe {'/'.join(parts)!r} in {path.parent}")
    return path
