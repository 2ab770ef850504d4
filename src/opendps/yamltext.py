"""YAML from users: plain documents only, and errors that never echo the text.

- Anchors and aliases are refused: a 470-byte document of nested aliases expanded to
  6.2 MB when it was stored and served back (a "billion laughs" alias bomb).
- A parse error names the line, the column and the problem, never the offending line
  itself: PyYAML's messages quote it, and a registration href that named a local file
  once echoed ``db_password: "…"`` from it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from opendps.errors import InvalidSpec


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors (``&a``) and aliases (``*a``)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise _AnchorsRefused(self.peek_event().start_mark)
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise _AnchorsRefused(event.start_mark)
        return super().compose_node(parent, index)


class _AnchorsRefused(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__()
        self.mark = mark


def describe_error(exc: yaml.YAMLError) -> str:
    """``line 3, column 5: mapping values are not allowed here`` (no quoted text)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "not valid YAML"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


MAX_FLOW_DEPTH = 64  # nested [ and {; PyYAML takes seconds to fail on 20,000 of them
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _flow_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` (brackets inside quoted strings count too: an
    over-estimate, which only matters beyond MAX_FLOW_DEPTH)."""
    depth = deepest = 0
    for char in _NOT_BRACKETS.sub("", text):
        depth = depth + 1 if char in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


def load_yaml(text: str | bytes, what: str = "document") -> Any:
    """Parse one YAML (or JSON) document; InvalidSpec (400) naming where it is wrong."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if _flow_depth(text) > MAX_FLOW_DEPTH:
        raise InvalidSpec(f"the {what} is nested more than {MAX_FLOW_DEPTH} levels deep")
    try:
        return yaml.load(text, Loader=_PlainLoader)
    except _AnchorsRefused as exc:
        raise InvalidSpec(
            f"the {what} uses YAML anchors or aliases (line {exc.mark.line + 1}), which "
            "this server does not accept; write the values out"
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"the {what} is not valid YAML or JSON ({describe_error(exc)})") from None
    except RecursionError:
        raise InvalidSpec(f"the {what} is nested too deeply") from None
