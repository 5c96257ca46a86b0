"""The stylesheet of tutorial content draws with what every browser has: no emoji font needed."""

import re
import urllib.parse
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tutorials.rendering import KNOWLEDGE_BOX_TYPES

STYLESHEET = Path(__file__).resolve().parents[2] / "tutorials/static/tutorials/tutorial-content.css"


def rules() -> dict[str, str]:
    css = re.sub(r"/\*.*?\*/", "", STYLESHEET.read_text(), flags=re.DOTALL)
    return {selector.strip(): body for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)}


def test_generated_content_is_plain_ascii_text():
    # "\1F4A1" (a light bulb emoji) showed as an empty box where no emoji font is installed.
    for selector, body in rules().items():
        for value in re.findall(r"content:\s*([^;]+)", body):
            assert "\\" not in value and value.isascii(), f"{selector} generates {value}"


def test_the_knowledge_box_icon_is_an_inline_svg():
    body = rules()[".tutorial-content .admonition.knowledge .admonition-title::before"]
    url = re.search(r'url\("data:image/svg\+xml,([^"]+)"\)', body)
    assert url is not None, body
    svg = ElementTree.fromstring(urllib.parse.unquote(url.group(1)))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.find("{http://www.w3.org/2000/svg}path") is not None
    assert re.search(r"width:\s*1em", body) and re.search(r"height:\s*1em", body)


def test_every_knowledge_box_type_has_a_style():
    selectors = rules()
    for kind in KNOWLEDGE_BOX_TYPES:
        if kind != "note":  # note is the default look of every admonition
            assert f".tutorial-content .admonition.{kind}" in selectors
