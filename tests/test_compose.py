"""docker-compose.yml describes the scale-out shape; no Docker engine runs here, so the
file is checked for the services, images, commands and health checks it must have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from newsletter.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_and_images() -> None:
    services = _compose()["services"]
    assert {"postgres", "mailpit", "web", "scheduler", "worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")
    for role in ("web", "scheduler", "worker", "migrate"):
        assert services[role]["image"] == "paper-digest:latest"


def test_roles_run_real_cli_commands() -> None:
    services = _compose()["services"]
    expected = {"web": "web", "scheduler": "scheduler", "worker": "worker", "migrate": "init"}
    for role, command in expected.items():
        argv = services[role]["command"]
        assert argv[:2] == ["newsletter", command]
        assert command in cli.commands  # the command exists


def test_every_app_role_uses_postgres_and_smtp() -> None:
    services = _compose()["services"]
    for role in ("web", "scheduler", "worker"):
        env = services[role]["environment"]
        assert env["NEWSLETTER_DATABASE_URL"].startswith("postgresql://")
        assert env["NEWSLETTER_MAIL_URL"] == "smtp://mailpit:1025"
        assert env["NEWSLETTER_SECRET_KEY"]


def test_health_checks_and_scale_out() -> None:
    services = _compose()["services"]
    for name in ("postgres", "mailpit", "web", "scheduler", "worker"):
        assert "healthcheck" in services[name], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["web"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
