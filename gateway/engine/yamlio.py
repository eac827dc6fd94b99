"""Reading flow YAML the one way the service does: YAML 1.2, round-trip nodes, line numbers.

YAML 1.2 keeps ``yes``/``no``/``on``/``off`` as strings (SPEC §4); a key given twice in one
mapping is an error rather than a silent "last one wins". The round-trip loader keeps each
node's position, so every finding and every extracted message names the line that holds it.
Shared by the loader (definition.py, questions.py) and the Babel extractor (extract.py).
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML


def yaml_loader() -> YAML:
    """A fresh loader (ruamel's YAML objects are not safe to share between threads)."""
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def load_yaml(text: str) -> Any:
    """The parsed document; raises ruamel.yaml's YAMLError on a syntax error or a duplicate key."""
    return yaml_loader().load(text)


def node_line(node: Any) -> int:
    """The 1-based line a parsed mapping or sequence starts on (1 when it has none)."""
    lc = getattr(node, "lc", None)
    return int(lc.line) + 1 if lc is not None and lc.line is not None else 1


def key_line(node: Any, key: object) -> int:
    """The 1-based line of ``key`` in a parsed mapping (the mapping's own line if unknown)."""
    try:
        return int(node.lc.key(key)[0]) + 1
    except (KeyError, AttributeError, TypeError, IndexError):
        return node_line(node)


def value_line(node: Any, key: object) -> int:
    """The 1-based line of the value under ``key`` (a folded ``>-`` text starts below its key)."""
    try:
        return int(node.lc.value(key)[0]) + 1
    except (KeyError, AttributeError, TypeError, IndexError):
        return key_line(node, key)


def item_line(node: Any, index: int) -> int:
    """The 1-based line of item ``index`` of a parsed sequence."""
    try:
        return int(node.lc.item(index)[0]) + 1
    except (KeyError, AttributeError, TypeError, IndexError):
        return node_line(node)
