"""Tutorial Markdown to sanitised HTML.

Instructors write Markdown; raw HTML in it is not markup but text: Python-Markdown itself escapes it
(its `html_block` and `html` processors are removed), so `<script>` shows as written and an author
sees what was refused. The HTML Markdown makes is then cleaned by nh3 (ammonia) with the allowlists
below, which attribute lists (`{: onclick=... }`) and link syntax (`[x](javascript:...)`) could
otherwise abuse. Fenced code takes attribute lists for click-to-run buttons: ```` ```{.bash .run
machine=beta} ```` renders as `<pre class="run"><code class="language-bash" machine="beta">`, and the
tutorial pane (portal/static/portal/tutorial.js) adds the button (`.run`, `.type`, `.copy`,
`.interrupt`); `machine` is kept only as a machine name. Pages are rendered once, when they are
saved (see `tutorials.models`), and again on each deploy (`manage.py render_tutorials`); variables
like `{{ vm.web.ip }}` survive rendering untouched and are filled in per student at display time by
`tutorials.variables`.
"""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as etree

import markdown
import nh3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

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
_URL_SCHEME_END = re.compile(r"[:/?#]")
# A tutorial variable (tutorials.variables) with the spaces authors put inside its braces.
_SPACED_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
# Elements that repeat without nesting deeper in the reader's eyes: list items, paragraphs, table
# parts. Deeper nesting of the rest is refused: a real page nests a dozen levels (a box, a list in a
# list, a code block), and a page nested hundreds deep is an accident or an attack.
_NOT_A_LEVEL = frozenset({"li", "dt", "dd", "p", "thead", "tbody", "tfoot", "tr", "td", "th"})
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


class _TooDeep(Exception):
    pass


class _NestingLimit(Treeprocessor):
    """Measures the parsed page's element tree before it is serialised."""

    def run(self, root: etree.Element) -> None:
        levels = [(root, 0)]
        while levels:
            element, depth = levels.pop()
            if element.tag not in _NOT_A_LEVEL:
                depth += 1
                if depth > MAX_NESTING_DEPTH + 1:  # the root <div> Markdown wraps the page in
                    raise _TooDeep
            levels.extend((child, depth) for child in element)


class _CompactVariablesInUrls(Treeprocessor):
    """`http://{{ vm.web.ip }}/` as `http://{{vm.web.ip}}/`: the same variable, but a URL that parses
    (a space cannot be in a host), which the sanitiser requires of every absolute URL it keeps."""

    def run(self, root: etree.Element) -> None:
        for element in root.iter():
            for name in URL_ATTRIBUTES.intersection(element.keys()):
                element.set(name, _SPACED_VARIABLE.sub(r"{{\1}}", element.get(name, "")))


class _TutorialMarkdown(Extension):
    """Raw HTML as text (Python-Markdown's documented way: remove the two HTML processors), the
    nesting limit, and variables in URLs written compactly."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_NestingLimit(md), "nesting_limit", 1)
        md.treeprocessors.register(_CompactVariablesInUrls(md), "compact_variables_in_urls", 0)


# A page is validated (full_clean) and then saved, and both need its rendering: one serves both.
@functools.lru_cache(maxsize=8)
def _render(source: str) -> str:
    converter = markdown.Markdown(
        extensions=[*MARKDOWN_EXTENSIONS, _TutorialMarkdown()],
        extension_configs=MARKDOWN_EXTENSION_CONFIGS,
        output_format="html",
    )
    try:
        html = converter.convert(source)
    except (RecursionError, _TooDeep) as error:
        # Python-Markdown parses nested blocks recursively: "- " * 3000 exhausts the stack.
        raise _too_deep(MAX_NESTING_DEPTH) from error
    return sanitise_html(html)


def _allowed_attribute_value(tag: str, name: str, value: str) -> str | None:
    """nh3's attribute filter (called for allowlisted attributes): None drops the attribute."""
    if name in URL_ATTRIBUTES and not _variables_cannot_choose_scheme(value):
        return None
    if name == "machine" and _MACHINE_NAME.match(value) is None:
        return None
    return value


def _variables_cannot_choose_scheme(url: str) -> bool:
    """False for URLs such as `{{ vm.a.user }}` or `java{{ x }}`, where a value filled in at
    display time, after sanitising, would decide the scheme (a user name "javascript:..."). Once
    a `:`, `/`, `?` or `#` precedes the first variable, the scheme is the author's, and checked."""
    before_variable, found, _ = url.partition("{{")
    return not found or _URL_SCHEME_END.search(before_variable) is not None


_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    attribute_filter=_allowed_attribute_value,
    url_schemes=set(ALLOWED_PROTOCOLS),
    strip_comments=True,
    link_rel=None,  # links are the author's own pages and references, shown as written
)


def sanitise_html(html: str) -> str:
    """Only allowlisted tags, attributes and URL schemes: other elements are dropped (their text
    stays), and so are other attributes."""
    return _CLEANER.clean(html)
