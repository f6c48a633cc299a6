"""Read the subscribe and preferences forms (HTML form posts and JSON alike).

Plain functions rather than WTForms classes: the fields are few, the same reader
serves the HTML forms and the JSON API, and CSRF comes from Flask-WTF's
``CSRFProtect`` on its own. Each reader returns the raw values (to re-fill the form),
per-field error messages, and — when everything is valid — the typed result. The
service validates again; this module's job is messages a person can act on.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from newsletter.errors import InvalidEmail, QueryError
from newsletter.subscribers.models import FREQUENCIES
from newsletter.subscribers.query import compile_profile
from newsletter.subscribers.service import MAX_PROFILE_CHARS, Preferences, normalise_email

#: The honeypot: a text field people never see (hidden by CSS, skipped by keyboard
#: and screen readers). Bots that fill every field fill this one too.
HONEYPOT: Final = "website"
WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULTS: Final[Mapping[str, str]] = {
    "email": "",
    "profile": "",
    "frequency": "daily",
    "hour": "7",
    "timezone": "UTC",
    "weekday": "0",
}
# Zone names that are valid but mean nothing to a person choosing where they live:
# the server's own zone and tzdata's placeholder.
_NOT_A_PLACE: Final = frozenset({"localtime", "Factory", "posixrules"})
_REGIONS: Final = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


@dataclass(frozen=True)
class ProfileProblem:
    """Where and why a profile does not parse (``QueryError``), for the page and API."""

    problem: str
    position: int

    @property
    def message(self) -> str:
        return f"{self.problem} (at character {self.position + 1})"

    def as_dict(self) -> dict[str, Any]:
        return {"problem": self.problem, "position": self.position, "message": self.message}


@dataclass
class FormResult:
    """What a form reader found: raw ``values``, ``errors`` by field, and ``prefs``
    (and ``email`` for the subscribe form) when there are no errors."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    problem: ProfileProblem | None = None
    prefs: Preferences | None = None
    email: str | None = None
    # The honeypot was filled: answer as if it worked, do nothing.
    trapped: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


def check_profile(text: str) -> ProfileProblem | None:
    """None when ``text`` is a valid profile, else what is wrong and where."""
    if not text.strip():
        return ProfileProblem("write at least one keyword or phrase", 0)
    if len(text) > MAX_PROFILE_CHARS:
        return ProfileProblem(f"the profile is longer than {MAX_PROFILE_CHARS} characters", 0)
    try:
        compile_profile(text)
    except QueryError as exc:
        return ProfileProblem(exc.problem, exc.position)
    return None


def read_preferences(data: Mapping[str, Any]) -> FormResult:
    """The profile and schedule fields of ``data`` (form or JSON object)."""
    values = {name: _text(data.get(name), DEFAULTS[name]) for name in DEFAULTS if name != "email"}
    result = FormResult(values)
    profile = values["profile"].strip()
    result.problem = check_profile(profile)
    if result.problem is not None:
        result.errors["profile"] = _sentence(result.problem.message)
    if values["frequency"] not in FREQUENCIES:
        result.errors["frequency"] = "Choose daily or weekly."
    hour = _int_in(values["hour"], 0, 23)
    if hour is None:
        result.errors["hour"] = "Choose an hour between 00:00 and 23:00."
    weekday = _int_in(values["weekday"], 0, 6)
    if weekday is None:
        result.errors["weekday"] = "Choose a day of the week."
    if values["timezone"] not in valid_timezones():
        result.errors["timezone"] = "Choose a time zone from the list."
    if result.ok and hour is not None and weekday is not None:
        result.prefs = Preferences(
            profile=profile,
            frequency=values["frequency"],
            hour=hour,
            timezone=values["timezone"],
            weekday=weekday,
        )
    return result


def read_subscribe(data: Mapping[str, Any]) -> FormResult:
    """The subscribe form: email, honeypot, then :func:`read_preferences`."""
    result = read_preferences(data)
    result.values["email"] = _text(data.get("email"), "").strip()
    result.trapped = bool(_text(data.get(HONEYPOT), "").strip())
    try:
        result.email = normalise_email(result.values["email"])
    except InvalidEmail:
        result.errors["email"] = "Enter an email address like ada@example.org."
    if not result.ok:
        result.prefs = None
    return result


def prefs_values(prefs: Preferences) -> dict[str, str]:
    """A subscriber's current preferences as form values."""
    return {
        "profile": prefs.profile,
        "frequency": prefs.frequency,
        "hour": str(prefs.hour),
        "timezone": prefs.timezone,
        "weekday": str(prefs.weekday),
    }


def problem_parts(text: str, problem: ProfileProblem) -> tuple[str, str, str]:
    """``text`` split around the problem: (before, the character at it, after); the
    middle part is empty when the problem is at the end (an unclosed quote)."""
    pos = max(0, min(problem.position, len(text)))
    return text[:pos], text[pos : pos + 1], text[pos + 1 :]


@functools.cache
def valid_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - _NOT_A_PLACE)


@functools.cache
def timezone_groups() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The zones for the time-zone menu: UTC, then each region's cities, sorted.

    Legacy aliases (``US/Pacific``, ``GB``) stay valid but are left out of the menu;
    a browser that reports one still gets it selected (the page's script adds it).
    """
    zones = valid_timezones()
    groups: list[tuple[str, tuple[str, ...]]] = [("", ("UTC",))]
    for region in _REGIONS:
        names = sorted(z for z in zones if z.startswith(region + "/"))
        if names:
            groups.append((region, tuple(names)))
    return tuple(groups)


@functools.cache
def menu_timezones() -> frozenset[str]:
    """Every zone the menu lists (a re-shown form adds any other valid one)."""
    return frozenset(name for _, names in timezone_groups() for name in names)


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool):  # JSON true/false is no number or text we accept
        return ""
    if isinstance(value, int | str):
        return str(value)
    return ""


def _int_in(text: str, low: int, high: int) -> int | None:
    try:
        number = int(text.strip())
    except ValueError:
        return None
    return number if low <= number <= high else None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
