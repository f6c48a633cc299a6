"""Docs are checked: every CLI command is documented in the README and has an example
in its --help (sqlite-utils' habit); the README starts with the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
COMMANDS = sorted(cli.commands)


def test_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"^    (.+)$", README, flags=re.M)
    assert "newsletter serve" in blocks[0] and "pip install" in blocks[0]
    assert blocks[1] == "./scripts/test"
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


@pytest.mark.parametrize("name", COMMANDS)
def test_command_documented_in_readme(name: str) -> None:
    headings = re.findall(r"^### (.+)$", README, flags=re.M)
    assert any(re.search(rf"\bnewsletter {name}\b", h) for h in headings), (
        f"`newsletter {name}` has no ### heading in README.md"
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert f"Example: newsletter {name}" in result.output or (
        "Example: NEWSLETTER_" in result.output and f"newsletter {name}" in result.output
    )


SETTINGS = sorted(
    set(
        re.findall(
            r'get\("([A-Z_]+)"',
            (Path(__file__).resolve().parents[1] / "newsletter" / "config.py").read_text(),
        )
    )
)


def test_settings_are_found() -> None:
    assert {"DATABASE_URL", "MAIL_URL", "RENDER_AHEAD"} <= set(SETTINGS)


@pytest.mark.parametrize("name", SETTINGS)
def test_setting_documented_in_readme(name: str) -> None:
    table_rows = [line for line in README.splitlines() if line.startswith("| `NEWSLETTER_")]
    assert any(f"`NEWSLETTER_{name}`" in row for row in table_rows), (
        f"NEWSLETTER_{name} is read by newsletter/config.py but missing from the README's "
        "settings table"
    )
