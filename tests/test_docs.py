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
