"""MkDocs hook: option tables generated from the dataclasses, so that a renamed or re-documented option changes
the docs and a removed one breaks the build.

In a page, ``<!-- options: module:Class -->`` becomes a table of the dataclass's fields (option, type, default,
help); ``<!-- options: module:Class exclude=module:Other -->`` leaves out the fields of ``Other`` (e.g. the
`SFTConfig` fields a `ReplayConfig` inherits); ``<!-- stages -->`` becomes the table of the CLI's stages.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
import typing
from pathlib import Path

MARKER = re.compile(r"<!-- options: (?P<target>[\w.]+:\w+)(?: exclude=(?P<exclude>[\w.]+:\w+))? -->")
STAGES_MARKER = "<!-- stages -->"


def on_config(config):
    """Import the package from this checkout, installed or not."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = MARKER.sub(lambda match: options_table(match["target"], match["exclude"]), markdown)
    if STAGES_MARKER in markdown:
        markdown = markdown.replace(STAGES_MARKER, stages_table())
    return markdown


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def options_table(target: str, exclude: str | None = None) -> str:
    from hf_forgetting.run_settings import declared_defaults

    cls = _resolve(target)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{target} is not a dataclass")
    skipped = {spec.name for spec in dataclasses.fields(_resolve(exclude))} if exclude else set()
    hints, defaults = typing.get_type_hints(cls), declared_defaults(cls)
    lines = ["| option | type | default | what it does |", "| --- | --- | --- | --- |"]
    own = vars(cls).get("__annotations__", {})
    for spec in sorted(dataclasses.fields(cls), key=lambda spec: spec.name not in own):  # its own options first, as --help
        if spec.name in skipped or not spec.init:
            continue
        help_text = " ".join(str(spec.metadata.get("help", "")).replace("%%", "%").split()).replace("|", "\\|")
        lines.append(f"| `--{spec.name}` | `{_type_name(hints[spec.name])}` | {_default(spec.name, defaults)} | {help_text} |")
    return "\n".join(lines)


def stages_table() -> str:
    from hf_forgetting.cli import STAGES

    lines = ["| stage | what it does |", "| --- | --- |"]
    lines += [f"| `hf-forgetting {stage}` | {help_text} |" for stage, (_, help_text) in STAGES.items()]
    return "\n".join(lines)


def _type_name(hint) -> str:
    text = getattr(hint, "__name__", None) if not typing.get_args(hint) else None
    return (text or str(hint).replace("typing.", "")).replace("|", "or")


def _default(name: str, defaults: dict) -> str:
    return f"`{defaults[name]!r}`".replace("|", "\\|") if name in defaults else "required"
