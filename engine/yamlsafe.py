"""Plain-data YAML: no object construction, no duplicate keys, YAML 1.2 booleans, line numbers kept."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

MAX_BYTES = 1_000_000
MAX_NODES = 200_000  # after expanding aliases: stops "billion laughs" documents

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
}


class YamlError(ValueError):
    """A document that is not plain, well-formed YAML data; `line` is 1-based (0 if unknown)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: `on`, `off`, `yes`, `no` stay strings
    (so a key named `on` or a country code `NO` mean what they say), and no
    base-60 numbers (so `17:00` stays a time)."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0|[-+]?[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o?[0-7_]+)$"),
    list("-+0123456789"),
)


@dataclass(slots=True)
class Document:
    data: Any
    root: yaml.Node | None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _check(root: yaml.Node) -> None:
    sizes: dict[int, int] = {}

    def walk(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:  # an alias: count it again without walking it again
            return sizes[key]
        sizes[key] = 1
        if node.tag not in _PLAIN_TAGS:
            raise YamlError(
                _line(node),
                f"YAML tag {node.tag!r} is not allowed: rule files hold plain data only"
                " (a tag like this would construct an object)",
            )
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise YamlError(
                            _line(key_node),
                            f"duplicate key {key_node.value!r} (first at line {seen[key_node.value]})",
                        )
                    seen[key_node.value] = _line(key_node)
                total += walk(key_node) + walk(value_node)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += walk(item)
        if total > MAX_NODES:
            raise YamlError(
                _line(node), f"document too large (over {MAX_NODES} values after expanding aliases)"
            )
        sizes[key] = total
        return total

    walk(root)


def load(text: str) -> Document:
    """Parse plain YAML data, keeping the node tree to find lines of errors later."""
    if len(text.encode()) > MAX_BYTES:
        raise YamlError(0, f"file larger than {MAX_BYTES} bytes")
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise YamlError(mark.line + 1 if mark else 0, f"not valid YAML: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise YamlError(0, f"not valid YAML: {err}") from None
    if root is None:
        return Document(None, None)
    _check(root)
    loader = _Loader(text)
    try:
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise YamlError(mark.line + 1 if mark else 0, f"not valid YAML: {err.problem or err}") from None
    finally:
        loader.dispose()
    return Document(data, root)


def locate(root: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[int, str]:
    """The line of the value at `loc` (pydantic's error path) and its path as written in YAML.

    Path parts that are not in the document (validator names, union branches)
    are skipped, so the line is that of the nearest enclosing value.
    """
    if root is None:
        return 0, ""
    node, line, path = root, _line(root), ""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    path = f"{path}.{part}" if path else str(part)
                    node, line = value_node, _line(key_node)
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            path = f"{path}[{part}]"
            node = node.value[part]
            line = _line(node)
    return line, path


def key_line(root: yaml.Node | None, loc: tuple[Any, ...], key: str) -> int | None:
    """The line of mapping key `key` inside the value at `loc`, if present."""
    if root is None:
        return None
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if key_node.value == key:
                return _line(key_node)
    return None
