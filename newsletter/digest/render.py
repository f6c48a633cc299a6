"""Render emails: a JSON-safe context in, subject / text / HTML out.

One renderer serves every email. An email is a directory
``templates/email/<name>/`` holding ``subject.txt``, ``body.txt`` and ``body.html``,
each extending ``templates/email/_base/``; contexts come from
:mod:`newsletter.digest.context` (re-exported here). Pure: no database, no network.

**CSS is inlined once per template, never per email.** The only CSS is
``_base/styles.css``; its selectors name a class, a tag or ``tag.class``, never an
ancestor or a state, so the style premailer gives an element depends on nothing but
that element's own start tag in the template. When jinja2 first loads an HTML
template, :class:`_StyleInliner`

1. finds every start tag of the template source (``<td class="card-cell">``; jinja
   blocks, expressions and HTML comments are skipped, and attributes that hold
   ``{{ … }}`` are kept aside),
2. builds a skeleton document holding one element per distinct static tag, runs
   premailer over it once with the stylesheet, and caches each element's resulting
   attributes (``style``, premailer's ``bgcolor``/``width``/``align``, no ``class``),
3. writes those attributes into the template source and drops its ``<style>`` block.

jinja2 then compiles the rewritten source and caches the compiled template, so an
email costs one jinja2 render and nothing else. :func:`render_email_premailer` is the
reference: the untouched templates (with their ``<style>`` block) rendered and then
passed through ``premailer.transform`` on every email, as a naive sender would.
``tests/digest/test_render.py`` checks over a corpus of contexts that both produce the
same elements with the same inline styles; ``benchmarks/bench_render.py`` times both.
"""

from __future__ import annotations

import functools
import html as html_lib
import importlib.resources
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import cssutils  # type: ignore[import-untyped]
import premailer
from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    select_autoescape,
)
from lxml import etree  # type: ignore[import-untyped]
from markupsafe import Markup

from newsletter.digest.context import (
    DEFAULT_MAX_PAPERS,
    ELLIPSIS,
    DigestPaper,
    Recipient,
    build_confirm_context,
    build_digest_context,
    clean_text,
)

__all__ = [
    "DEFAULT_MAX_PAPERS",
    "MAX_HTML_BYTES",
    "DigestPaper",
    "Recipient",
    "Rendered",
    "build_confirm_context",
    "build_digest_context",
    "premailer_transform",
    "render_email",
    "render_email_premailer",
]

#: Gmail clips an HTML body past ~102 KB behind "[Message clipped]", hiding the
#: footer and its unsubscribe link; we stay under with a margin.
MAX_HTML_BYTES: Final = 100_000
#: Mail clients show ~60–90 characters of a subject; past 150 nothing reads it.
SUBJECT_CHARS: Final = 150
#: Column width of the text part: fits an 80-column terminal with a quote prefix.
TEXT_WIDTH: Final = 72

_TEMPLATE_PACKAGE: Final = "newsletter.templates"
_TEMPLATE_DIR: Final = "email"
_STYLESHEET: Final = "_base/styles.css"

#: The premailer settings of both paths: the one-off skeleton run and the reference.
PREMAILER_OPTIONS: Final[Mapping[str, Any]] = {
    # Once styles are inline nothing may depend on a class or a <style> block.
    "remove_classes": True,
    # Never fetch a <link rel=stylesheet>; there is none, and rendering is pure.
    "allow_network": False,
    "disable_link_rewrites": True,
    # cssutils' validation only logs ("Unknown Property name" for the mso-/-webkit-
    # properties mail clients need) and changes nothing; _check_stylesheet validates
    # the stylesheet once, strictly, instead.
    "disable_validation": True,
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered email. ``subject`` is one line, ``text`` ends with a newline,
    ``html`` has every style inline. ``unsubscribe_url`` is the context's unsubscribe
    link (None when it has none); the message builder turns it into the
    List-Unsubscribe headers."""

    subject: str
    text: str
    html: str
    unsubscribe_url: str | None = None
    #: ``html`` in UTF-8 when the renderer already encoded it (to check the size
    #: budget), so the message builder does not encode it again.
    html_utf8: bytes | None = field(default=None, repr=False, compare=False)

    def html_bytes(self) -> bytes:
        """``html`` encoded as UTF-8 (encoded once)."""
        return self.html_utf8 if self.html_utf8 is not None else self.html.encode()


def render_email(
    name: str, context: Mapping[str, Any], *, max_html_bytes: int = MAX_HTML_BYTES
) -> Rendered:
    """Render the email ``name`` (``"digest"``, ``"confirm"``) for ``context``.

    If the HTML would exceed ``max_html_bytes`` (UTF-8) and the context lists
    ``papers``, the last papers are left out and counted in ``more`` until it fits,
    so the email ends with "and N more" and a link to the web copy instead of being
    clipped. Raises ``jinja2.TemplateNotFound`` for an unknown ``name`` and
    ``jinja2.UndefinedError`` when the context lacks a field a template uses.
    """
    return _render_fitting(_templates(name, inline=True), context, max_html_bytes, None)


def render_email_premailer(
    name: str, context: Mapping[str, Any], *, max_html_bytes: int = MAX_HTML_BYTES
) -> Rendered:
    """The reference path: like :func:`render_email`, but the HTML is rendered with
    its ``<style>`` block and run through ``premailer.transform`` every time.

    Many times slower; it exists so tests can prove :func:`render_email` equal to it
    and the benchmark can measure the difference. Never used to send mail.
    """
    return _render_fitting(
        _templates(name, inline=False), context, max_html_bytes, premailer_transform
    )


def premailer_transform(html: str) -> str:
    """``premailer.transform`` with this module's settings (:data:`PREMAILER_OPTIONS`)."""
    result: str = premailer.transform(html, **PREMAILER_OPTIONS)
    return result


# ------------------------------------------------------------------------ rendering


@dataclass(frozen=True, slots=True)
class _Templates:
    subject: Template
    text: Template
    html: Template


@functools.cache
def _templates(name: str, *, inline: bool) -> _Templates:
    env = _environment(inline)
    return _Templates(
        env.get_template(f"{name}/subject.txt"),
        env.get_template(f"{name}/body.txt"),
        env.get_template(f"{name}/body.html"),
    )


def _render_fitting(
    templates: _Templates,
    context: Mapping[str, Any],
    max_html_bytes: int,
    postprocess: Callable[[str], str] | None,
) -> Rendered:
    rendered = _render_once(templates, context, postprocess)
    papers = context.get("papers")
    if len(rendered.html_bytes()) <= max_html_bytes or not isinstance(papers, list):
        return rendered
    # Too big: find the most papers that fit. Sizes grow with the paper count, so a
    # binary search needs ~log2(20) extra renders, and only for oversized digests.
    lo, hi = 0, len(papers) - 1
    best: Rendered | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = _render_once(templates, _keep_papers(context, mid), postprocess)
        if len(candidate.html_bytes()) <= max_html_bytes:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    # If not even the frame fits, it goes anyway: its link leads to every paper.
    return best or _render_once(templates, _keep_papers(context, 0), postprocess)


def _keep_papers(context: Mapping[str, Any], count: int) -> dict[str, Any]:
    papers = context["papers"]
    return {
        **context,
        "papers": papers[:count],
        "more": int(context.get("more", 0)) + len(papers) - count,
    }


def _render_once(
    templates: _Templates,
    context: Mapping[str, Any],
    postprocess: Callable[[str], str] | None,
) -> Rendered:
    html = templates.html.render(context)
    if postprocess is not None:
        html = postprocess(html)
    links = context.get("links")
    unsubscribe = links.get("unsubscribe") if isinstance(links, Mapping) else None
    return Rendered(
        subject=_one_line(templates.subject.render(context)),
        text=_tidy_text(templates.text.render(context)),
        html=html,
        unsubscribe_url=unsubscribe if isinstance(unsubscribe, str) else None,
        html_utf8=html.encode(),
    )


def _one_line(subject: str) -> str:
    """A subject that is one safe header line whatever the titles held: no controls,
    no line breaks, whitespace collapsed, at most :data:`SUBJECT_CHARS` characters."""
    subject = clean_text(subject)
    if not subject.isprintable():  # e.g. a soft hyphen or zero-width space from a PDF
        subject = " ".join("".join(ch for ch in subject if ch.isprintable()).split())
    if len(subject) <= SUBJECT_CHARS:
        return subject
    cut = subject.rfind(" ", 0, SUBJECT_CHARS)
    return subject[: cut if cut > SUBJECT_CHARS // 2 else SUBJECT_CHARS].rstrip() + ELLIPSIS


def _tidy_text(text: str) -> str:
    """At most two blank lines in a row and one final newline. (The templates leave
    no trailing spaces; tests check that rather than paying to strip every line.)"""
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return text.strip("\n") + "\n"


# ------------------------------------------------------------------ jinja2 plumbing


class _EmailEnvironment(Environment):
    """An Environment whose templates hold their globals in a plain dict.

    jinja2 gives each template a ChainMap over the environment's globals, so that a
    global added later shows through, and copies that ChainMap into every render's
    context: a Python-level walk that cost ~7 µs per render, 20 µs per digest. Our
    globals are all set before the first template loads, so a snapshot is the same.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


@functools.cache
def _environment(inline: bool) -> Environment:
    """The jinja2 environment of one path; built once, templates compiled once."""
    env = _EmailEnvironment(
        loader=_EmailLoader(_inliner() if inline else None),
        # Escape everything in HTML; the text parts and the subject are not HTML.
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship inside the package and never change while we run.
        auto_reload=False,
    )
    env.filters["wrap"] = wrap
    env.filters["starred"] = starred
    env.filters["ljust"] = str.ljust
    # The reference path renders every card every time, as a naive sender would.
    # A filter, not a global: jinja2 calls filters directly, globals through a
    # dispatcher that costs as much as a cache hit.
    cards = _Cards(env, cached=inline)
    env.filters["card"] = cards
    env.filters["cards"] = cards.many
    return env


#: Cards kept per process. A daily run of 100,000 digests over 500 papers shows about
#: 40,000 distinct cards (the same paper, highlighted for the same terms, in many
#: digests); a few KB each.
CARD_CACHE_MAX: Final = 50_000
#: The one per-digest field of a paper: it is drawn outside the card.
_NOT_IN_CARD: Final = "rank"


class _Cards:
    """``paper|card(template)`` in the digest templates: one paper's card, rendered
    from ``templates/email/<template>`` with ``paper`` and nothing else.

    A card depends only on its paper's context (its rank, the one per-digest field,
    is drawn by the caller and withheld from the card, so using it there fails), so
    cards are memoised by that content: across a run the same paper with the same
    highlights appears in many digests and is rendered once. The key is the paper's
    whole context, so two papers that differ in anything shown never share a card;
    like every context, a paper context must not be changed after it is built.
    The memos are cleared when full.
    """

    def __init__(self, env: Environment, *, cached: bool) -> None:
        self._env = env
        self._cached = cached
        self._memo: dict[tuple[Any, ...], str] = {}
        self._by_identity: dict[tuple[Any, ...], tuple[tuple[Any, ...], str]] = {}
        self._templates: dict[str, Template] = {}
        self._ranks: dict[tuple[str, Any], str] = {}

    def __call__(self, paper: Mapping[str, Any], name: str) -> str:
        if not self._cached:
            return self._render(name, paper)
        # Fast path: contexts of one run share their paper values (the context
        # builder memoises them), so the identities of the values find the card
        # without reading them. The entry keeps the values alive, so no other object
        # can take one of their ids while the entry exists.
        # The context builder puts the rank last, so slicing it off is cheap.
        if type(paper) is dict and next(reversed(paper)) == _NOT_IN_CARD:
            values = tuple(paper.values())[:-1]
        else:
            values = tuple([v for k, v in paper.items() if k != _NOT_IN_CARD])
        same = (name, *map(id, values))
        entry = self._by_identity.get(same)
        if entry is not None:
            return entry[1]
        key = (name, *_frozen(paper))
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= CARD_CACHE_MAX:
                self._memo.clear()
                self._by_identity.clear()
            found = self._memo[key] = self._render(name, paper)
        if len(self._by_identity) >= CARD_CACHE_MAX:
            self._by_identity.clear()
        self._by_identity[same] = (values, found)
        return found

    def many(
        self,
        papers: Sequence[Mapping[str, Any]],
        rank_name: str,
        card_name: str,
        sep: str = "",
    ) -> str:
        """``papers|cards(rank_template, card_template[, sep])``: every paper's rank
        piece (rendered with ``rank`` alone, once per rank) and card, joined in
        Python rather than looped over in the template."""
        pieces: list[str] = []
        for paper in papers:
            rank = paper[_NOT_IN_CARD]
            head = self._ranks.get((rank_name, rank)) if self._cached else None
            if head is None:
                head = self._template(rank_name).render(rank=rank)
                if self._cached:
                    self._ranks[(rank_name, rank)] = head
            pieces += (head, self(paper, card_name), sep)
        out = "".join(pieces)
        return Markup(out) if card_name.endswith(".html") else out

    def _template(self, name: str) -> Template:
        template = self._templates.get(name)
        if template is None:
            template = self._templates[name] = self._env.get_template(name)
        return template

    def _render(self, name: str, paper: Mapping[str, Any]) -> str:
        fields = {k: v for k, v in paper.items() if k != _NOT_IN_CARD}
        out = self._template(name).render(paper=fields)
        return Markup(out) if name.endswith(".html") else out

    def clear(self) -> None:
        self._memo.clear()
        self._by_identity.clear()
        self._ranks.clear()


def _frozen(paper: Mapping[str, Any]) -> Iterator[Any]:
    """(name, value) pairs of a paper context, hashable: lists become tuples and the
    small dicts in them (segments, links) tuples of their items."""
    for name, value in paper.items():
        if name == _NOT_IN_CARD:
            continue
        if type(value) is list:
            value = tuple(tuple(x.items()) if type(x) is dict else x for x in value)
        yield name, value


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """``text`` re-flowed to ``width`` columns: ``first`` (default ``indent``) before
    the first line, ``indent`` before the others. Words are never broken, so a long
    URL keeps its line. A template filter (``{{ x|wrap(72, "    ") }}``)."""
    text = " ".join(text.split())
    head = indent if first is None else first
    if not text:
        return head.rstrip()
    if len(head) + len(text) <= width:  # most authors, terms and titles: one line
        return head + text
    # One regex pass does the greedy fill in C: the longest run of at most ``room``
    # characters that ends before a space, else one overlong word.
    room = max(width - len(indent), 1)
    lines: list[str] = []
    pos = 0
    if len(head) != len(indent):
        match = _line_pattern(max(width - len(head), 1)).match(text)
        assert match is not None  # the second alternative matches any word
        lines.append(match.group(1) or match.group(2))
        pos = match.end()
    lines += [a or b for a, b in _line_pattern(room).findall(text, pos)]
    return head + ("\n" + indent).join(lines)


@functools.cache
def _line_pattern(room: int) -> re.Pattern[str]:
    return re.compile(rf"(.{{1,{room}}})(?: |$)|(\S+)(?: |$)")


def starred(segments: list[Mapping[str, Any]]) -> str:
    """Segments joined, hits marked ``*like this*``: emphasis a terminal reader
    recognises. A template filter for the text part."""
    return "".join(f"*{s['text']}*" if s["hit"] else s["text"] for s in segments)


class _EmailLoader(BaseLoader):
    """Loads ``templates/email/**`` from the installed package (works from a wheel).

    HTML sources lose their indentation (whitespace between tags only costs bytes);
    with an inliner they also get their styles inlined and their ``<style>`` removed.
    Both paths compact alike, so their output differs only in how styles got inline.
    """

    def __init__(self, inliner: _StyleInliner | None) -> None:
        self._inliner = inliner

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        source = _read_template(template)
        if template.endswith(".html"):
            source = _compact(source)
            if self._inliner is not None:
                source = self._inliner.inline(source, template)
        return source, None, _always_fresh


def _always_fresh() -> bool:
    return True


def _read_template(template: str) -> str:
    parts = template.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise TemplateNotFound(template)
    path = importlib.resources.files(_TEMPLATE_PACKAGE).joinpath(_TEMPLATE_DIR, *parts)
    if not path.is_file():
        raise TemplateNotFound(template)
    return path.read_text(encoding="utf-8")


def _compact(source: str) -> str:
    return "\n".join(stripped for line in source.splitlines() if (stripped := line.strip()))


# ------------------------------------------------------------------ style inlining

# What the stylesheet may contain so that an element's style is a function of its
# own tag and attributes: a class, a tag, or tag.class — no combinators, no ids,
# no attribute selectors, no pseudo-classes.
_SIMPLE_SELECTOR: Final = re.compile(r"[a-z][a-z0-9]*|(?:[a-z][a-z0-9]*)?(?:\.[A-Za-z_][-\w]*)+")
# Properties cssutils does not know but mail clients need (Outlook's mso-hide, iOS's
# -webkit-text-size-adjust); everything else must be valid CSS.
_VENDOR_PREFIXES: Final = ("mso-", "-webkit-", "-ms-", "-moz-")
# CSS Text 3 properties newer than cssutils' profiles (long URLs and tokens wrap).
_UNPROFILED: Final = frozenset({"word-break", "overflow-wrap"})

# Tokens of a template source, tried in this order at each "<" or "{": the <style>
# block, things to leave alone (jinja comments, statements and expressions, HTML
# comments including Outlook's conditional ones, the doctype, end tags), a start
# tag whose attributes are all double-quoted, or anything else that starts a tag —
# which the inliner refuses rather than guess at.
_TOKEN: Final = re.compile(
    r"""
    (?P<style><style\b[^>]*>.*?</style\s*>)
  | (?P<skip>\{\#.*?\#\} | \{%.*?%\} | \{\{.*?\}\}
      | <!--.*?--> | <!(?i:doctype)[^>]*> | </[a-zA-Z][a-zA-Z0-9]*\s*>)
  | (?P<start><(?P<tag>[a-zA-Z][a-zA-Z0-9]*)
      (?P<attrs>(?:\s+[a-zA-Z_:][-\w:.]*="[^"]*")*)\s*(?P<slash>/?)>)
  | (?P<bad><[a-zA-Z])
    """,
    re.DOTALL | re.VERBOSE,
)
_ATTR: Final = re.compile(r'\s+([a-zA-Z_:][-\w:.]*)="([^"]*)"')
_JINJA: Final = ("{{", "{%", "{#")

# A start tag as the inliner sees it: its tag name and its static attributes.
_TagKey = tuple[str, tuple[tuple[str, str], ...]]


class _StyleInliner:
    """Writes the stylesheet's styles into template sources; see the module doc."""

    def __init__(self, css: str) -> None:
        _check_stylesheet(css)
        self._css = css
        self._attrs: dict[_TagKey, tuple[tuple[str, str], ...]] = {}
        self._lock = threading.Lock()

    def inline(self, source: str, template: str) -> str:
        """``source`` with every start tag's attributes as premailer would leave them,
        and without its ``<style>`` block. Raises ``TemplateError`` for markup it
        cannot inline safely (a class made of ``{{ … }}``, an unquoted attribute)."""
        tags = list(self._start_tags(source, template))
        with self._lock:
            missing = list(
                dict.fromkeys(key for _, key, _ in tags if key[0] and key not in self._attrs)
            )
            if missing:
                self._attrs.update(self._premailer_attributes(missing))
        out: list[str] = []
        pos = 0
        for match, key, dynamic in tags:
            out.append(source[pos : match.start()])
            out.append(self._start_tag(key, dynamic, match, template))
            pos = match.end()
        out.append(source[pos:])
        return "".join(out)

    def _start_tags(
        self, source: str, template: str
    ) -> Iterator[tuple[re.Match[str], _TagKey, list[tuple[str, str]]]]:
        """(match, key, dynamic attributes) of each start tag; style blocks yield a
        match with an empty key so they are replaced by nothing."""
        for token in _TOKEN.finditer(source):
            if token.group("style"):
                yield token, ("", ()), []
            elif token.group("bad"):
                snippet = source[token.start() : token.start() + 60]
                raise TemplateError(f"{template}: cannot inline styles into {snippet!r}")
            elif token.group("start"):
                static: list[tuple[str, str]] = []
                dynamic: list[tuple[str, str]] = []
                for name, value in _ATTR.findall(token.group("attrs")):
                    if any(mark in value for mark in _JINJA):
                        if name in ("class", "style"):
                            raise TemplateError(
                                f"{template}: {name}={value!r} must be static text so its"
                                " style can be computed once"
                            )
                        dynamic.append((name, value))
                    else:
                        static.append((name, html_lib.unescape(value)))
                yield token, (token.group("tag").lower(), tuple(static)), dynamic

    def _start_tag(
        self,
        key: _TagKey,
        dynamic: list[tuple[str, str]],
        match: re.Match[str],
        template: str,
    ) -> str:
        tag, _ = key
        if not tag:  # the <style> block
            return ""
        attrs = dict(self._attrs[key])
        clash = attrs.keys() & {name for name, _ in dynamic}
        if clash:
            raise TemplateError(
                f"{template}: <{tag}> sets {sorted(clash)} both in CSS and in markup"
            )
        attributes = [f' {name}="{_attribute(value, template)}"' for name, value in attrs.items()]
        # Dynamic attributes keep their source text: jinja2 fills and escapes them.
        attributes += [f' {name}="{value}"' for name, value in dynamic]
        end = " />" if match.group("slash") else ">"
        return f"<{tag}{''.join(attributes)}{end}"

    def _premailer_attributes(
        self, keys: list[_TagKey]
    ) -> dict[_TagKey, tuple[tuple[str, str], ...]]:
        """Run premailer once over a skeleton with one element per key.

        The skeleton is built as a tree (not parsed from text), so elements the HTML
        parser would move (a <td> outside a table) stay where they are; with simple
        selectors, where an element sits does not change its style.
        """
        root = etree.Element("html")
        etree.SubElement(etree.SubElement(root, "head"), "style").text = self._css
        body = etree.SubElement(root, "body")
        elements = [etree.SubElement(body, tag, attrib=dict(attrs)) for tag, attrs in keys]
        premailer.Premailer(**PREMAILER_OPTIONS).transform(root)
        return {
            key: tuple((str(k), str(v)) for k, v in element.attrib.items())
            for key, element in zip(keys, elements, strict=True)
        }


def _attribute(value: str, template: str) -> str:
    escaped = html_lib.escape(value, quote=True)
    if any(mark in escaped for mark in _JINJA):
        raise TemplateError(f"{template}: an inlined style contains jinja2 syntax: {value!r}")
    return escaped


@functools.cache
def _inliner() -> _StyleInliner:
    return _StyleInliner(_read_template(_STYLESHEET))


def _check_stylesheet(css: str) -> None:
    """Refuse a stylesheet the inliner cannot honour, or that has invalid CSS.

    Raises ``TemplateError`` naming the rule: a selector that is not simple, an
    at-rule (``@media`` cannot be inlined), or a property value cssutils rejects.
    """
    captured: list[logging.LogRecord] = []
    handler = _Collect(captured)
    log = logging.getLogger("CSSUTILS")
    log.addHandler(handler)
    try:
        sheet = cssutils.parseString(css, validate=False)
    finally:
        log.removeHandler(handler)
    problems = [f"CSS does not parse: {record.getMessage()}" for record in captured]
    for rule in sheet:
        if rule.type == rule.COMMENT:
            continue
        if rule.type != rule.STYLE_RULE:
            problems.append(f"{rule.typeString} cannot be inlined")
            continue
        for selector in rule.selectorList:
            if not _SIMPLE_SELECTOR.fullmatch(selector.selectorText):
                problems.append(f"selector {selector.selectorText!r} is not a tag or class")
        for prop in rule.style.getProperties(all=True):
            if prop.name.startswith(_VENDOR_PREFIXES) or prop.name in _UNPROFILED:
                continue
            if not cssutils.profile.validate(prop.name, prop.value):
                problems.append(f"{rule.selectorText}: invalid {prop.name}: {prop.value}")
    if problems:
        raise TemplateError(f"{_STYLESHEET}: " + "; ".join(problems))


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self._into = into

    def emit(self, record: logging.LogRecord) -> None:
        self._into.append(record)
