"""`newsletter serve` on the embedded defaults, as a newcomer runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import SAMPLES
from tests.smtp_server import free_port


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return env | {"NEWSLETTER_PORT": str(port)}


def test_serve_delivers_a_dropped_dump_without_another_command(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, port)
    inbox = tmp_path / "var" / "inbox"
    inbox.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "newsletter",
            "subscribe",
            "ada@example.org",
            "--profile",
            "diffusion",
            "--hour",
            "0",
            "--confirmed",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Started first, then the dump is dropped in: the inbox job picks it up.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("serve did not answer /healthz")
        (inbox / "today.txt.part").write_bytes((SAMPLES / "000_9c40651dd6d15728.txt").read_bytes())
        (inbox / "today.txt.part").rename(inbox / "today.txt")
        maildir = tmp_path / "var" / "maildir" / "new"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (maildir.is_dir() and any(maildir.iterdir())):
            time.sleep(0.5)
        mails = list(maildir.iterdir()) if maildir.is_dir() else []
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            health = json.loads(r.read())
        assert health["database"] == "ok"
        assert {j["name"]: j["status"] for j in health["jobs"]}["inbox"] == "ok"
        assert len(mails) == 1, "no digest appeared in var/maildir/new"
        assert b"ada@example.org" in mails[0].read_bytes()
        assert (inbox / "processed" / "today.txt").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    status = subprocess.run(
        [sys.executable, "-m", "newsletter", "status"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    data = json.loads(status.stdout)
    assert data["papers"] == 56
    assert data["deliveries"] == {"sent": 1}
    assert {j["name"] for j in data["jobs"]} >= {"inbox", "plan", "deliver"}
