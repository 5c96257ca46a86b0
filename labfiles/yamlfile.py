"""YAML for lab files: written in one stable layout, read with YAML's safe loader within limits,
with the line of every mapping key and list item kept so that errors can name them.

Read: at most MAX_YAML_BYTES, MAX_DEPTH levels (checked on the event stream, which needs no
recursion), no aliases, safe tags only (a `!!python/...` tag is an error, never code).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_BYTES = 256 * 1024
MAX_DEPTH = 32


class LabFileError(Exception):
    """Bad input in one file, with the line (1-based) when known."""

    def __init__(self, file: str, message: str, line: int | None = None) -> None:
        self.file, self.line, self.message = file, line, message
        where = f"{file}, line {line}" if line else file
        super().__init__(f"{where}: {message}")


class YamlMap(dict):
    """A mapping read from a file: `line` of the mapping, `key_lines` of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YamlList(list):
    line: int = 0
    item_lines: list[int]


def _check_shape(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.MarkedYAMLError(
                problem="YAML aliases (*name) are not supported; write the values out",
                problem_mark=event.start_mark,
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(
                    problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=event.start_mark
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load(file: str, data: bytes) -> Any:
    """The document in `data`, with mappings as YamlMap and lists as YamlList; LabFileError if not."""
    if len(data) > MAX_YAML_BYTES:
        raise LabFileError(file, f"{len(data)} bytes; a YAML file may have at most {MAX_YAML_BYTES}.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LabFileError(file, "not UTF-8 text", data[: error.start].count(b"\n") + 1) from None
    if "\x00" in text:
        raise LabFileError(file, "contains a NUL character", text[: text.index("\x00")].count("\n") + 1)
    loader = yaml.SafeLoader(text)
    try:
        _check_shape(text)
        node = loader.get_single_node()
        return _plain(loader, node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or str(error)
        raise LabFileError(file, problem, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as error:
        raise LabFileError(file, f"not valid YAML: {error}") from None
    finally:
        loader.dispose()


_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}


def _plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    expected = _PLAIN_TAGS.get(type(node))
    if expected is not None and node.tag != expected:
        # Scalars go through the safe constructor, which refuses unknown tags; collections are built
        # here, so their tags are checked here.
        raise yaml.MarkedYAMLError(problem=f"the tag {node.tag} is not allowed", problem_mark=node.start_mark)
    if isinstance(node, yaml.MappingNode):
        result = YamlMap()
        result.line, result.key_lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.MarkedYAMLError(problem="keys must be text", problem_mark=key_node.start_mark)
            if key in result:
                raise yaml.MarkedYAMLError(
                    problem=f"the key {key!r} appears twice", problem_mark=key_node.start_mark
                )
            result[key] = _plain(loader, value_node)
            result.key_lines[key] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        items = YamlList(_plain(loader, item) for item in node.value)
        items.line, items.item_lines = (
            node.start_mark.line + 1,
            [item.start_mark.line + 1 for item in node.value],
        )
        return items
    return loader.construct_object(node, deep=True)


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, the way people write it."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text and text == text.rstrip(" ") and "\r" not in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)


def dump(data: Any) -> bytes:
    """Keys in the order given, block style, no line wrapping: the same data, the same bytes."""
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 20
    ).encode()
