"""Markdown features authors rely on, and the size limit."""

from html.parser import HTMLParser

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from tutorials import rendering
from tutorials.rendering import render_markdown


def test_fenced_code_keeps_the_command_and_its_language():
    html = render_markdown("```bash\nssh student@10.0.0.5 'echo <ok>'\n```")
    assert '<pre><code class="language-bash">' in html
    assert "ssh student@10.0.0.5 'echo &lt;ok&gt;'" in html


def test_tables_align_columns_without_inline_css():
    html = render_markdown("| Host | Port |\n|:-----|-----:|\n| web | 80 |")
    assert "<table>" in html
    assert '<th align="left">Host</th>' in html
    assert '<td align="right">80</td>' in html
    assert "style=" not in html


@pytest.mark.parametrize("kind", ["knowledge", "note", "tip", "warning", "info"])
def test_knowledge_boxes_are_admonitions(kind):
    html = render_markdown(f'!!! {kind} "Good to know"\n    VLANs split *one* switch.')
    assert f'<div class="admonition {kind}">' in html
    assert '<p class="admonition-title">Good to know</p>' in html
    assert "<p>VLANs split <em>one</em> switch.</p>" in html


def test_images_and_links_to_uploaded_media_stay():
    html = render_markdown("![Topology](/media/tutorials/2026/11/topology.png)\n\n[Slides](/media/s.pdf)")
    assert '<img alt="Topology" src="/media/tutorials/2026/11/topology.png">' in html
    assert '<a href="/media/s.pdf">Slides</a>' in html


def test_attribute_lists_can_size_an_image():
    html = render_markdown("![Topology](/media/t.png){: width=300 }")
    assert 'width="300"' in html


def test_sane_lists_and_emphasis():
    html = render_markdown("3. three\n4. four\n\n**bold** and `code`")
    assert '<ol start="3">' in html
    assert "<strong>bold</strong> and <code>code</code>" in html


def test_headings_carry_no_ids():
    assert render_markdown("# Setup {: #csrftoken }") == "<h1>Setup</h1>"


@override_settings(TUTORIAL_MARKDOWN_MAX_BYTES=200 * 1024)
def test_a_one_megabyte_page_is_refused_with_its_size_and_the_limit():
    with pytest.raises(ValidationError) as raised:
        render_markdown("a" * (1024 * 1024))
    message = " ".join(raised.value.messages)
    assert "1.0\xa0MB" in message
    assert "200.0\xa0KB" in message


@override_settings(TUTORIAL_MARKDOWN_MAX_BYTES=10)
def test_the_limit_counts_utf8_bytes_not_characters():
    render_markdown("a" * 10)
    with pytest.raises(ValidationError):
        render_markdown("é" * 6)


def realistic_page(size: int) -> str:
    section = (
        "## Configure the web server\n\nLog in and install the package. " + "Lorem ipsum dolor sit. " * 20
        + "\n\n```bash\nssh {{ vm.web.user }}@{{ vm.web.ip }}\nsudo apt-get install nginx\n```\n\n"
        '!!! tip "Hint"\n    See [the docs](https://nginx.org/en/docs/).\n\n'
        "| Setting | Value |\n|---|---|\n| port | 80 |\n\n1. First\n2. Then\n\n"
    )  # fmt: skip
    return (section * (size // len(section) + 1))[:size]


def test_a_page_at_the_size_limit_renders():
    # Measured, not asserted (timing tests flake on busy machines): about 0.5 s on one core.
    html = render_markdown(realistic_page(200 * 1024))
    assert html.count('<div class="admonition tip">') > 100


def test_many_short_paragraphs_render():
    # html5lib (bleach) slowed down with the square of the number of siblings; ammonia does not.
    html = render_markdown("*x*\n\n" * 4000)
    assert html.count("<p><em>x</em></p>") == 4000


def test_raw_html_is_shown_as_written():
    html = render_markdown('<div class="x">\n<p>raw <b>html</b></p>\n</div>\n\nand <kbd>inline</kbd>')
    assert '&lt;div class="x"&gt;' in html
    assert "raw &lt;b&gt;html&lt;/b&gt;" in html
    assert "and &lt;kbd&gt;inline&lt;/kbd&gt;" in html
    assert "<div" not in html and "<b>" not in html and "<kbd>" not in html


def test_the_sanitiser_keeps_only_the_allowlist():
    """What Markdown would never produce is still cleaned, should an extension ever produce it."""
    html = rendering.sanitise_html(
        '<p class="a" id="b" style="c" onclick="d">t<script>x</script><iframe></iframe>'
        '<a href="javascript:x" title="t">j</a><a href="/ok">ok</a><!-- c --></p>'
        '<pre><code machine="web-1">a</code><code machine="no way">b</code></pre>'
    )
    assert html == (
        '<p class="a">t<a title="t">j</a><a href="/ok">ok</a></p>'
        '<pre><code machine="web-1">a</code><code>b</code></pre>'
    )


def test_output_is_well_formed_enough_to_parse():
    class Depth(HTMLParser):
        depth = 0

        def handle_starttag(self, tag, attrs):
            if tag not in {"img", "br", "hr"}:
                self.depth += 1

        def handle_endtag(self, tag):
            self.depth -= 1

    parser = Depth()
    parser.feed(render_markdown("<div><p>unclosed <b>bold\n\n# Heading\n\ntext"))
    assert parser.depth == 0
