"""The views. Thin: read the input, open a session, call one service function, render.

URL map (the emailed links are fixed by the digest builder and the confirmation
email; each only *shows* a page, and every change is a POST):

==========================  =====  ==============================================
``/``                       GET    subscribe form
``/``                       POST   subscribe (same answer for every address)
``/preview``                POST   the form again, with the preview (works without JS)
``/confirm/<token>``        GET    confirmation page with a button
``/confirm/<token>``        POST   activate
``/u/<token>``              GET    unsubscribe page with a button
``/u/<token>``              POST   unsubscribe (human form, CSRF) or RFC 8058 one-click
``/p/<token>``              GET    preferences
``/p/<token>``              POST   save profile and schedule
``/p/<token>/pause``        POST   pause or resume
``/p/<token>/export``       POST   download my data (JSON)
``/p/<token>/delete``       POST   delete my data
``/d/<web_token>``          GET    web copy of a sent digest
``/healthz``                GET    liveness, database, last run of each job
``/api/subscribe``          POST   JSON subscribe
``/api/profile/check``      POST   JSON ``{ok, error: {problem, position}}``
``/api/profile/preview``    POST   JSON recent matches
==========================  =====  ==============================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias, TypeVar, cast

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select, text
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from newsletter.db import session_scope
from newsletter.digest.context import safe_url
from newsletter.digest.deliver import load_batch, render_delivery
from newsletter.digest.models import Delivery
from newsletter.errors import InvalidEmail, NotFound, QueryError
from newsletter.matching.service import PaperMatch, match_stored
from newsletter.subscribers import service
from newsletter.subscribers.models import Subscriber
from newsletter.web import forms
from newsletter.web.app import DIGEST_CSP, RateLimits, WebState, state

# "Recent" for the preview: a week of papers shows what a profile catches on a
# typical day and on a quiet one, and stays quick to match while someone types.
PREVIEW_WINDOW: Final = timedelta(days=7)
PREVIEW_SHOWN: Final = 8
# The one answer to every subscribe, whatever the address's state (new, pending,
# active, unsubscribed) — so the form cannot be used to learn who is subscribed. (The
# page, subscribe_done.html, says the same in its own words.)
SUBSCRIBE_ANSWER: Final = (
    "If this address needs confirming, a confirmation link is on its way. "
    "If it is already subscribed, nothing changes."
)
ONE_CLICK_ANSWER: Final = "Unsubscribed. No more digests will be sent to this address.\n"

View = TypeVar("View", bound=Callable[..., Any])
#: A rendered page and its status, or a response (redirects, downloads, JSON).
Page: TypeAlias = tuple[str, int]
Reply: TypeAlias = BaseResponse | Page


# ------------------------------------------------------------------ registration


def register(
    app: Flask, csrf: CSRFProtect, limiter: Limiter | None, limits: RateLimits | None
) -> None:
    """Add every route, the CSRF guard and the error pages to ``app``."""
    lim = limits or RateLimits()

    def limited(view: View, *rules: tuple[str, Callable[[], str] | None, str | None]) -> View:
        """``view`` under each (limit, key function, shared scope) rule, POSTs only.
        A scope makes endpoints share one counter: the form and the API subscribe."""
        if limiter is None:
            return view
        for limit, key_func, scope in rules:
            if scope is None:
                rule = limiter.limit(limit, key_func=key_func, methods=["POST"])
            else:
                rule = limiter.shared_limit(limit, scope, key_func=key_func, methods=["POST"])
            view = cast(View, rule(view))
        return view

    per_ip = None  # the limiter's default key: the client address
    subscribe_rules = (
        (lim.subscribe_per_ip, per_ip, "subscribe-ip"),
        (lim.subscribe_per_address, _address_key, "subscribe-address"),
    )
    add = app.add_url_rule
    add("/", "subscribe_form", subscribe_form, methods=["GET"])
    add("/", "subscribe", limited(subscribe, *subscribe_rules), methods=["POST"])
    add(
        "/preview",
        "preview",
        limited(preview, (lim.preview_per_ip, per_ip, None)),
        methods=["POST"],
    )
    add("/confirm/<token>", "confirm_page", confirm_page, methods=["GET"])
    add("/confirm/<token>", "confirm", confirm, methods=["POST"])
    add("/u/<token>", "unsubscribe_page", unsubscribe_page, methods=["GET"])
    add("/u/<token>", "unsubscribe", unsubscribe, methods=["POST"])
    add("/p/<token>", "preferences", preferences, methods=["GET"])
    add("/p/<token>", "save_preferences", save_preferences, methods=["POST"])
    add("/p/<token>/pause", "pause", pause, methods=["POST"])
    add("/p/<token>/export", "export", export, methods=["POST"])
    add("/p/<token>/delete", "delete", delete, methods=["POST"])
    add("/d/<web_token>", "web_copy", web_copy, methods=["GET"])
    add("/healthz", "healthz", healthz, methods=["GET"])
    add(
        "/api/subscribe",
        "api_subscribe",
        limited(api_subscribe, *subscribe_rules),
        methods=["POST"],
    )
    add(
        "/api/profile/check",
        "api_check",
        limited(api_check, (lim.check_per_ip, per_ip, None)),
        methods=["POST"],
    )
    add(
        "/api/profile/preview",
        "api_preview",
        limited(api_preview, (lim.preview_per_ip, per_ip, None)),
        methods=["POST"],
    )

    app.before_request(lambda: _csrf_guard(csrf))
    app.context_processor(_form_choices)
    app.register_error_handler(CSRFError, _csrf_failed)
    app.register_error_handler(HTTPException, _http_error)


def _form_choices() -> dict[str, Any]:
    return {
        "timezone_groups": forms.timezone_groups(),
        "timezone_names": forms.menu_timezones(),
        "weekdays": forms.WEEKDAYS,
    }


def _csrf_guard(csrf: CSRFProtect) -> Response | None:
    """Require a CSRF token on every POST except the two that cannot carry one."""
    if request.method != "POST" or request.routing_exception is not None:
        return None
    if request.path.startswith("/api/"):
        if not request.is_json:
            return _json_error(415, "send a JSON body with Content-Type: application/json")
        return None
    if request.endpoint == "unsubscribe" and is_one_click():
        return None
    csrf.protect()
    return None


def is_one_click() -> bool:
    """An RFC 8058 one-click unsubscribe: the mail provider POSTs exactly
    ``List-Unsubscribe=One-Click``, without cookies and so without a CSRF token.
    A request that carries a token is the human form and is checked as such."""
    return request.form.get("List-Unsubscribe") == "One-Click" and "csrf_token" not in request.form


def _address_key() -> str:
    """Rate-limit key of the address being subscribed (hashed: the limiter's memory
    need not hold a list of addresses)."""
    raw: Any = ""
    if request.is_json:
        data = request.get_json(silent=True)
        raw = data.get("email", "") if isinstance(data, dict) else ""
    else:
        raw = request.form.get("email", "")
    raw = raw if isinstance(raw, str) else ""
    try:
        address = service.normalise_email(raw)
    except InvalidEmail:
        address = raw.strip().lower()
    return "address:" + hashlib.sha256(address.encode()).hexdigest()[:32]


# ----------------------------------------------------------------------- helpers


def _state() -> WebState:
    return state(current_app)


@contextmanager
def _reading() -> Iterator[Session]:
    """A session for a GET: it writes nothing and commits nothing."""
    with _state().factory() as session:
        yield session


def _writing() -> Any:
    return session_scope(_state().factory)


def _page(template: str, status: int = 200, **context: Any) -> Page:
    return render_template(template, **context), status


def _invalid_link(kind: str) -> Page:
    return _page("link_invalid.html", 404, kind=kind)


def _json_error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify({"ok": False, "message": message, **extra})
    response.status_code = status
    return response


# -------------------------------------------------------------------- subscribe


def subscribe_form() -> Page:
    return _page("subscribe.html", values=dict(forms.DEFAULTS), errors={})


def subscribe() -> Page:
    form = forms.read_subscribe(request.form)
    if form.trapped:
        # A bot: it gets the ordinary answer, and nothing happens.
        return _page("subscribe_done.html", email=form.values["email"])
    if not form.ok or not _subscribe(form):
        return _subscribe_form_again(form, 400)
    return _page("subscribe_done.html", email=form.values["email"])


def _subscribe(form: forms.FormResult) -> bool:
    """Subscribe (or not, for an active address), commit, then mail the link.

    False, with the reason in ``form.errors``, if the service refuses what the form
    reader let through. The service validates before it looks the address up, so
    that answer does not depend on the address either.
    """
    assert form.email is not None and form.prefs is not None
    st = _state()
    try:
        with _writing() as session:
            result = service.subscribe(
                session, form.email, form.prefs, secret_key=st.secret_key, now=st.clock()
            )
            address, profile, token = (
                result.subscriber.email,
                result.subscriber.profile,
                result.confirm_token,
            )
    except InvalidEmail as exc:
        form.errors["email"] = str(exc)
        return False
    except (QueryError, service.InvalidPreference) as exc:
        form.errors["profile"] = str(exc)
        return False
    # After the commit: a rolled-back row never gets an email.
    if token is not None:
        st.mailer.send(address, profile, token)
    return True


def _subscribe_form_again(
    form: forms.FormResult, status: int, preview: dict[str, Any] | None = None
) -> Page:
    return _page(
        "subscribe.html",
        status,
        values=form.values,
        errors=form.errors,
        problem=form.problem,
        problem_parts=forms.problem_parts(form.values["profile"], form.problem)
        if form.problem
        else None,
        preview=preview,
    )


def preview() -> Page:
    """The subscribe form with a preview of recent matches (the no-JS path)."""
    form = forms.read_subscribe(request.form)
    form.errors.pop("email", None)  # previewing needs no address yet
    if form.problem is not None:
        return _subscribe_form_again(form, 200)
    with _reading() as session:
        found = _recent_matches(session, form.values["profile"].strip())
    return _subscribe_form_again(form, 200, preview=found)


def _recent_matches(session: Session, profile: str) -> dict[str, Any]:
    since = _state().clock() - PREVIEW_WINDOW
    found = match_stored(session, profile, since=since)
    return {
        "since": since,
        "total": len(found),
        "matches": [_match_view(m) for m in found[:PREVIEW_SHOWN]],
    }


def _match_view(found: PaperMatch) -> dict[str, Any]:
    """One preview row: the title cut into plain and matched segments."""
    title = found.paper.title
    segments: list[dict[str, Any]] = []
    pos = 0
    for start, end in sorted(found.match.title_spans):
        start, end = max(start, pos), min(end, len(title))
        if start >= end:
            continue
        if start > pos:
            segments.append({"text": title[pos:start], "hit": False})
        segments.append({"text": title[start:end], "hit": True})
        pos = end
    if pos < len(title):
        segments.append({"text": title[pos:], "hit": False})
    return {
        "title": segments,
        "url": safe_url(found.paper.url)
        or (f"https://arxiv.org/abs/{found.paper.arxiv_id}" if found.paper.arxiv_id else None),
        "matched": list(found.match.matched),
        "first_seen_at": found.paper.first_seen_at,
    }


# ---------------------------------------------------------------------- confirm


def confirm_page(token: str) -> Page:
    st = _state()
    with _reading() as session:
        sub = service.pending_confirmation(session, token, now=st.clock())
        if sub is None:
            return _invalid_link("confirm")
        return _page("confirm.html", sub=_summary(sub), token=token)


def confirm(token: str) -> Page:
    st = _state()
    with _writing() as session:
        try:
            sub = service.confirm(session, token, now=st.clock())
        except NotFound:
            return _invalid_link("confirm")
        summary = _summary(sub)
        manage = service.manage_token_for(sub, st.secret_key)
    return _page("confirmed.html", sub=summary, manage_token=manage)


def _summary(sub: Subscriber) -> dict[str, Any]:
    """What a page shows about a subscriber (read inside the session)."""
    return {
        "email": sub.email,
        "status": sub.status,
        "paused": sub.paused,
        "profile": sub.profile,
        "frequency": sub.frequency,
        "hour": sub.hour,
        "timezone": sub.timezone,
        "weekday": sub.weekday,
        "weekday_name": forms.WEEKDAYS[sub.weekday] if 0 <= sub.weekday <= 6 else "",
    }


# ------------------------------------------------------------------ unsubscribe


def unsubscribe_page(token: str) -> Page:
    with _reading() as session:
        sub = service.by_manage_token(session, token)
        if sub is None:
            return _invalid_link("manage")
        return _page("unsubscribe.html", sub=_summary(sub), token=token)


def unsubscribe(token: str) -> Reply:
    one_click = is_one_click()
    st = _state()
    summary: dict[str, Any] | None = None
    with _writing() as session:
        sub = service.by_manage_token(session, token)
        if sub is not None:
            service.unsubscribe(sub, now=st.clock())
            summary = _summary(sub)
    if one_click:
        # RFC 8058: 200 for every one-click POST, even for an unknown token (which
        # then does nothing): the answer tells a guesser nothing, and a provider
        # retrying a lost response gets the same 200.
        return Response(ONE_CLICK_ANSWER, 200, mimetype="text/plain")
    if summary is None:
        return _invalid_link("manage")
    return _page("unsubscribed.html", sub=summary, token=token)


# ------------------------------------------------------------------ preferences


def preferences(token: str) -> Page:
    with _reading() as session:
        sub = service.by_manage_token(session, token)
        if sub is None:
            return _invalid_link("manage")
        summary = _summary(sub)
    values = forms.prefs_values(
        service.Preferences(
            summary["profile"],
            summary["frequency"],
            summary["hour"],
            summary["timezone"],
            summary["weekday"],
        )
    )
    return _page("preferences.html", sub=summary, token=token, values=values, errors={})


def save_preferences(token: str) -> Reply:
    form = forms.read_preferences(request.form)
    with _writing() as session:
        sub = service.by_manage_token(session, token)
        if sub is None:
            return _invalid_link("manage")
        if form.prefs is not None:
            try:
                service.update_preferences(sub, form.prefs)
            except (QueryError, service.InvalidPreference) as exc:
                form.errors["profile"] = str(exc)
        summary = _summary(sub)
    if not form.ok:
        return _page(
            "preferences.html",
            400,
            sub=summary,
            token=token,
            values=form.values,
            errors=form.errors,
            problem_parts=forms.problem_parts(form.values["profile"], form.problem)
            if form.problem
            else None,
        )
    flash("Saved. Your next digest uses these settings.", "success")
    return redirect(url_for("preferences", token=token), 303)


def pause(token: str) -> Reply:
    paused = request.form.get("paused") == "1"
    with _writing() as session:
        sub = service.by_manage_token(session, token)
        if sub is None:
            return _invalid_link("manage")
        service.set_paused(sub, paused)
    flash(
        "Paused. No digests until you resume."
        if paused
        else "Resumed. Your next digest arrives at your usual hour.",
        "success",
    )
    return redirect(url_for("preferences", token=token), 303)


def export(token: str) -> Reply:
    with _reading() as session:
        sub = service.by_manage_token(session, token)
        if sub is None:
            return _invalid_link("manage")
        data = service.export(session, sub)
    body = json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"
    return Response(
        body,
        200,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="paper-digest-my-data.json"'},
    )


def delete(token: str) -> Reply:
    if request.form.get("confirm") != "delete":
        flash("Tick the box to confirm that everything should be deleted.", "error")
        return redirect(url_for("preferences", token=token) + "#delete", 303)
    with _writing() as session:
        sub = service.by_manage_token(session, token)
        if sub is None:
            return _invalid_link("manage")
        service.delete(session, sub)
    return _page("deleted.html")


# --------------------------------------------------------------------- web copy


def web_copy(web_token: str) -> Reply:
    st = _state()
    with _reading() as session:
        delivery = session.scalar(select(Delivery).where(Delivery.web_token == web_token))
        if delivery is None:
            return _invalid_link("digest")
        deliveries, subs, papers = load_batch(session, [delivery.id])
        sub = subs.get(delivery.subscriber_id)
        if sub is None:
            return _invalid_link("digest")
        html = render_delivery(st.settings, deliveries[0], sub, papers).html
    response = Response(html, 200, mimetype="text/html")
    response.headers["Content-Security-Policy"] = DIGEST_CSP
    return response


# ----------------------------------------------------------------------- health


def healthz() -> Response:
    from newsletter.status import job_runs

    try:
        with _reading() as session:
            session.execute(text("SELECT 1"))
            jobs = job_runs(session)
    except Exception:
        return _json_error(503, "database unreachable")
    # Each scheduled job's last run, so a stuck scheduler or failing worker shows here.
    return jsonify({"ok": True, "database": "ok", "jobs": jobs})


# -------------------------------------------------------------------------- API


def _json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "send a JSON object")
    return data


def api_subscribe() -> Response:
    form = forms.read_subscribe(_json_body())
    if form.ok and not form.trapped:
        _subscribe(form)
    if not form.ok:
        extra: dict[str, Any] = {"errors": form.errors}
        if form.problem is not None:
            extra["error"] = form.problem.as_dict()
        return _json_error(400, "some fields need attention", **extra)
    response = jsonify({"ok": True, "message": SUBSCRIBE_ANSWER})
    response.status_code = 202
    return response


def api_check() -> Response:
    profile = _text_field(_json_body(), "profile")
    problem = forms.check_profile(profile)
    if problem is None:
        return jsonify({"ok": True})
    return jsonify({"ok": False, "error": problem.as_dict()})


def api_preview() -> Response:
    profile = _text_field(_json_body(), "profile")
    problem = forms.check_profile(profile)
    if problem is not None:
        return jsonify({"ok": False, "error": problem.as_dict()})
    with _reading() as session:
        found = _recent_matches(session, profile.strip())
    return jsonify(
        {
            "ok": True,
            "since": _iso(found["since"]),
            "total": found["total"],
            "matches": [{**m, "first_seen_at": _iso(m["first_seen_at"])} for m in found["matches"]],
        }
    )


def _text_field(data: dict[str, Any], name: str) -> str:
    value = data.get(name, "")
    return value if isinstance(value, str) else ""


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# ----------------------------------------------------------------------- errors


def _csrf_failed(error: CSRFError) -> Page:
    return _page("message.html", 400, kind="csrf")


def _http_error(error: HTTPException) -> Reply:
    status = error.code or 500
    if request.path.startswith("/api/"):
        return _json_error(status, error.description or error.name)
    kind = {404: "not_found", 405: "not_found", 413: "too_large", 429: "rate_limited"}.get(
        status, "error"
    )
    return _page("message.html", status, kind=kind)
