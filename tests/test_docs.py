"""The documentation site's generated parts: option tables from the dataclasses, a section per CLI stage, and
API-reference targets that exist (`make docs` builds the site strictly; these catch the same breaks in pytest)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

import options_tables  # noqa: E402


def test_every_cli_stage_has_a_section_with_its_options_on_the_command_line_page():
    from hf_forgetting.cli import STAGES

    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert {f"## `{stage}`" for stage in STAGES} <= set(page.splitlines())
    rendered = options_tables.on_page_markdown(page, None, None, None)
    assert "<!-- options" not in rendered and "<!-- stages -->" not in rendered
    for stage in STAGES:
        assert f"| `hf-forgetting {stage}` |" in rendered


def test_the_replay_config_table_lists_its_own_options_and_none_of_sftconfigs():
    from trl import SFTConfig

    from hf_forgetting.replay.config import ReplayConfig

    table = options_tables.options_table("hf_forgetting.replay.config:ReplayConfig", "trl:SFTConfig")
    names = re.findall(r"^\| `--(\w+)` \|", table, re.MULTILINE)
    own = {f.name for f in dataclasses.fields(ReplayConfig)} - {f.name for f in dataclasses.fields(SFTConfig)}
    assert set(names) == own and "| `--replay_ratio` | `float` | `0.03125` |" in table


def test_a_table_of_a_class_that_is_gone_breaks_the_build():
    with pytest.raises(AttributeError):
        options_tables.on_page_markdown("<!-- options: hf_forgetting.cli.fit:NoSuchArguments -->", None, None, None)


def test_every_api_reference_target_exists():
    targets = re.findall(r"^::: ([\w.]+)$", (ROOT / "docs" / "reference" / "python.md").read_text(), re.MULTILINE)
    assert len(targets) > 20
    for target in targets:
        module, _, name = target.rpartition(".")
        try:
            importlib.import_module(target)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), name), target
