"""Tutorial Markdown to sanitised HTML.

Instructors write Markdown (raw HTML allowed); students' browsers get only what the allowlists
below permit. Fenced code takes attribute lists for click-to-run buttons: ```` ```{.bash .run
machine=beta} ```` renders as `<pre class="run"><code class="language-bash" machine="beta">`, and the
tutorial pane (portal/static/portal/tutorial.js) adds the button (`.run`, `.type`, `.copy`,
`.interrupt`); `machine` is kept only as a machine name. Markup outside the allowlist is kept as
escaped, visible text rather than silently removed, so an author sees what was refused. Pages are
rendered once, when they are saved (see `tutorials.models`); variables like `{{ vm.web.ip }}`
survive rendering untouched and are filled in per student at display time by `tutorials.variables`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import bleach
import markdown
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat

# Fixed: authors cannot enable extensions. No `toc`: it adds `id`s, and ids on user content can
# clobber globals of the page's scripts (`window.<id>`).
MARKDOWN_EXTENSIONS = ["fenced_code", "tables", "admonition", "attr_list", "sane_lists"]
# Column alignment as `align="..."` instead of inline CSS: no `style` attribute is allowed at all.
MARKDOWN_EXTENSION_CONFIGS = {"tables": {"use_align_attribute": True}}

# Admonition types with a style in tutorials/static/tutorials/tutorial-content.css:
# `!!! knowledge "Title"` draws a knowledge box; any other type falls back to the note style.
KNOWLEDGE_BOX_TYPES = ("knowledge", "note", "info", "tip", "warning", "danger")

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div",
        "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
        "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "s", "samp", "small", "span",
        "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
        "ul",
    }
)  # fmt: skip
# No id/name (DOM clobbering), no style (CSS tricks), no on* handlers, nothing that loads frames.
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"class", "title"}),
    "a": frozenset({"href"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "th": frozenset({"align", "colspan", "rowspan"}),
    "td": frozenset({"align", "colspan", "rowspan"}),
    "ol": frozenset({"start"}),
    "details": frozenset({"open"}),
    # Click-to-run code blocks (```{.bash .run machine=beta}): the machine a Run/Type button targets.
    "code": frozenset({"machine"}),
}
# What a click-to-run block may name as its machine: a lab machine's name (a DNS label).
_MACHINE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Relative URLs (e.g. /media/...) have no scheme and are allowed too. No data: URLs: images are
# uploaded as tutorial media instead.
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
URL_ATTRIBUTES = frozenset({"href", "src"})

# html5lib's tree walker slows down quadratically with the number of sibling elements (a 150 KB
# page of 30,000 short paragraphs took minutes), so the HTML is sanitised in slices of about this
# size, cut between top-level elements.
SANITISE_SLICE_BYTES = 16 * 1024

_TAG = re.compile(r"<!--.*?-->|<(/?)([a-zA-Z][a-zA-Z0-9-]*)(?:\s[^>]*)?>", re.DOTALL)
_VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_URL_SCHEME_END = re.compile(r"[:/?#]")
# HTML elements whose end tag is optional (HTML Living Standard, "optional tags").
_OPTIONAL_END_TAG_ELEMENTS = frozenset(
    {"li", "dt", "dd", "p", "rt", "rp", "optgroup", "option", "colgroup", "caption", "thead", "tbody",
     "tfoot", "tr", "td", "th"}
)  # fmt: skip
# Deeper nesting is refused: a real page nests a dozen levels (a box, a list in a list, a code block),
# and html5lib's sanitising slows down with the square of the depth (100 KB of `<div>`: 10 s).
MAX_NESTING_DEPTH = 64


def validate_markdown_size(source: str) -> None:
    """Refuse sources above TUTORIAL_MARKDOWN_MAX_BYTES before anything tries to render them."""
    limit = settings.TUTORIAL_MARKDOWN_MAX_BYTES
    size = len(source.encode("utf-8"))
    if size > limit:
        raise ValidationError(
            "This text is %(size)s; the limit is %(limit)s. Split it over several pages "
            "or move large content into an uploaded file.",
            code="markdown_too_large",
            params={"size": filesizeformat(size), "limit": filesizeformat(limit)},
        )


def render_markdown(source: str) -> str:
    """Sanitised HTML for a tutorial page or step; raises ValidationError when `source` is too large
    or nests too deeply to be shown."""
    validate_markdown_size(source)
    return _render(source)


def validate_markdown(source: str) -> None:
    """The fields' validator: refuses in forms and the API what saving could not render (the
    rendering is kept, so the save that follows does not render again)."""
    render_markdown(source)


def _too_deep(maximum: int) -> ValidationError:
    return ValidationError(
        "This text nests lists, quotes or elements more than %(maximum)d levels deep; "
        "nobody can read that. Flatten it.",
        code="markdown_too_deep",
        params={"maximum": maximum},
    )


# A page is validated (full_clean) and then saved, and both need its rendering: one serves both.
@functools.lru_cache(maxsize=8)
def _render(source: str) -> str:
    converter = markdown.Markdown(
        extensions=MARKDOWN_EXTENSIONS,
        extension_configs=MARKDOWN_EXTENSION_CONFIGS,
        output_format="html",
    )
    try:
        html = converter.convert(source)
    except RecursionError as error:
        # Python-Markdown parses nested blocks recursively: "- " * 3000 exhausts the stack.
        raise _too_deep(MAX_NESTING_DEPTH) from error
    if _nesting_depth(html) > MAX_NESTING_DEPTH:
        raise _too_deep(MAX_NESTING_DEPTH)
    return sanitise_html(html)


def _nesting_depth(html: str) -> int:
    """How deeply elements nest, counting those whose end tag cannot be left out (an open `<li>` or
    `<p>` is closed by the next one, so repeating them does not nest)."""
    depth = deepest = 0
    for match in _TAG.finditer(html):
        closing, name = match.group(1), match.group(2)
        if name is None or name.lower() in _OPTIONAL_END_TAG_ELEMENTS | _VOID_ELEMENTS:
            continue
        if closing:
            depth = max(depth - 1, 0)
        elif not match.group(0).endswith("/>"):
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def sanitise_html(html: str) -> str:
    """Only allowlisted tags, attributes and URL schemes; other markup becomes escaped text."""
    cleaner = bleach.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=_is_allowed_attribute,
        protocols=ALLOWED_PROTOCOLS,
        strip=False,
        strip_comments=True,
    )
    # Safe to sanitise slices separately: every slice comes out with its elements closed and ends
    # in plain data state (no raw-text or foreign elements are allowed), so joining them cannot
    # create markup that a single pass would have refused. A cut in an odd place only changes
    # where an element the author left open gets closed.
    return "".join(cleaner.clean(piece) for piece in _top_level_slices(html))


def _is_allowed_attribute(tag: str, name: str, value: str) -> bool:
    allowed = name in ALLOWED_ATTRIBUTES["*"] or name in ALLOWED_ATTRIBUTES.get(tag, ())
    if allowed and name in URL_ATTRIBUTES:
        return _variables_cannot_choose_scheme(value)
    if allowed and name == "machine":
        return _MACHINE_NAME.match(value) is not None
    return allowed


def _variables_cannot_choose_scheme(url: str) -> bool:
    """False for URLs such as `{{ vm.a.user }}` or `java{{ x }}`, where a value filled in at
    display time, after sanitising, would decide the scheme (a user name "javascript:..."). Once
    a `:`, `/`, `?` or `#` precedes the first variable, the scheme is the author's, and checked."""
    before_variable, found, _ = url.partition("{{")
    return not found or _URL_SCHEME_END.search(before_variable) is not None


def _top_level_slices(html: str) -> Iterator[str]:
    start = depth = 0
    for match in _TAG.finditer(html):
        closing, name = match.group(1), match.group(2)
        if name is None:  # a comment
            continue
        if closing:
            depth = max(depth - 1, 0)
        elif name.lower() not in _VOID_ELEMENTS and not match.group(0).endswith("/>"):
            depth += 1
        if depth == 0 and match.end() - start >= SANITISE_SLICE_BYTES:
            yield html[start : match.end()]
            start = match.end()
    yield html[start:]
