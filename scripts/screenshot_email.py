"""Render sample emails and photograph them with headless chromium.

    python scripts/screenshot_email.py [--papers N] [--out screenshots] [--chromium PATH]

Writes, under ``screenshots/`` (gitignored):

* ``digest.html``, ``digest.txt``, ``digest-1200.png``, ``digest-375.png`` — a digest
  of the sample papers in ``tests/data/emails/sample_papers.json`` (real titles and
  abstracts, synthetic authors and ids), past the per-email cap so the "and N more"
  card shows;
* ``confirm.html``, ``confirm.txt``, ``confirm-1200.png``, ``confirm-375.png``.

1200 px is a desktop mail client's reading pane, 375 px a phone. The HTML is exactly
what :func:`newsletter.digest.render.render_email` sends. Chromium runs with no
network, no profile and no sandbox (it is given local files only).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from newsletter.digest.render import (
    DigestPaper,
    Recipient,
    build_confirm_context,
    build_digest_context,
    render_email,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "emails" / "sample_papers.json"
WIDTHS = (1200, 375)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def sample_contexts(papers: int) -> dict[str, dict[str, object]]:
    """The digest and confirmation contexts the screenshots show."""
    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    recipient = Recipient(
        email="mira.okafor@example.org",
        profile=data["profile"],
        unsubscribe_url="https://papers.example.org/u/Zm9vYmFy",
        preferences_url="https://papers.example.org/p/Zm9vYmFy",
    )
    ranked = [
        DigestPaper(
            title=p["title"],
            abstract=p["abstract"],
            authors=tuple(p["authors"]),
            arxiv_id=p["arxiv_id"],
            url=p["url"],
            score=p["score"],
            matched=tuple(p["matched"]),
            title_spans=tuple((a, b) for a, b in p["title_spans"]),
            abstract_spans=tuple((a, b) for a, b in p["abstract_spans"]),
        )
        for p in data["papers"]
    ]
    digest = build_digest_context(
        recipient,
        ranked,
        period_label="Tuesday 30 July 2024",
        web_url="https://papers.example.org/d/2024-07-30-Zm9v",
        site_name="Paper Digest",
        max_papers=papers,
    )
    confirm = build_confirm_context(
        email=recipient.email,
        profile=recipient.profile,
        confirm_url="https://papers.example.org/c/Y29uZmlybQ",
        site_name="Paper Digest",
    )
    return {"digest": digest, "confirm": confirm}


def find_chromium(explicit: str | None) -> str:
    for candidate in (explicit, "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return candidate
    sys.exit("chromium not found: apt-get install -y chromium, or pass --chromium PATH")


def run_chromium(chromium: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
    return done.stdout


def page_height(chromium: str, html: Path, width: int) -> int:
    """The email's full height at ``width``, so the screenshot holds all of it.

    Chromium's --screenshot captures the window only, so a throwaway measuring page
    loads the email in a frame of that width and writes its height into its title.
    (The email itself has no script; only this local tool page does.)
    """
    probe = html.with_name(f".measure-{html.stem}.html")
    probe.write_text(
        f"""<!DOCTYPE html><html><head><title>0</title></head><body style="margin:0">
<iframe id="f" src="{html.name}" style="width:{width}px;height:100px;border:0"></iframe>
<script>
document.getElementById("f").onload = function () {{
  document.title = String(this.contentDocument.documentElement.scrollHeight);
}};
</script></body></html>""",
        encoding="utf-8",
    )
    try:
        dom = run_chromium(
            chromium,
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            f"--window-size={width},800",
            "--dump-dom",
            probe.resolve().as_uri(),
        )
    finally:
        probe.unlink()
    start = dom.index("<title>") + len("<title>")
    return int(dom[start : dom.index("</title>", start)])


def screenshot(chromium: str, html: Path, png: Path, width: int) -> None:
    height = page_height(chromium, html, width)
    run_chromium(
        chromium, f"--window-size={width},{height}", f"--screenshot={png}", html.resolve().as_uri()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=20, help="papers listed (default 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--chromium", help="chromium binary (default: found on PATH)")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, context in sample_contexts(args.papers).items():
        rendered = render_email(name, context)
        html = args.out / f"{name}.html"
        html.write_text(rendered.html, encoding="utf-8")
        (args.out / f"{name}.txt").write_text(
            f"Subject: {rendered.subject}\n\n{rendered.text}", encoding="utf-8"
        )
        for width in WIDTHS:
            png = args.out / f"{name}-{width}.png"
            screenshot(chromium, html, png, width)
            print(f"{png}  ({len(rendered.html.encode()):,} bytes of HTML)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
