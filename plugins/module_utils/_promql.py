# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which metrics a PromQL expression reads, and which expressions a Grafana dashboard runs.

The dashboards of the observability role are checked against a live Prometheus: every metric name
they select must exist there. This is the small part of PromQL that check needs: a tokenizer that
tells metric names from functions, keywords, label names, durations and strings. It does not parse
or validate the expression; Prometheus does that.
"""

from __future__ import annotations

import re
from typing import Optional

# Keywords that are never metric names: binary operators, modifiers and grouping.
KEYWORDS = frozenset(("and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring",
                      "group_left", "group_right"))
# Keywords followed by a parenthesised list of label names.
GROUPING = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right"))
# Number literals spelled like identifiers.
NUMBERS = frozenset(("inf", "nan"))

_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$\w+)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<matcher>=~|!~|!=|==|=)
  | (?P<other>.)
""", re.VERBOSE)


def _tokens(expr: str) -> list[tuple[str, str]]:
    """``(kind, text)`` of every token but spaces and comments."""
    return [(match.lastgroup, match.group()) for match in _TOKEN_RE.finditer(expr)
            if match.lastgroup not in ("space", "comment")]


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _closing(tokens: list[tuple[str, str]], start: int, opening: str, closing: str) -> int:
    """The index of the token that closes the bracket at ``start`` (or the end of the tokens)."""
    depth = 0
    for index in range(start, len(tokens)):
        text = tokens[index][1]
        if text == opening:
            depth += 1
        elif text == closing:
            depth -= 1
            if depth == 0:
                return index
    return len(tokens)


def _matcher_names(tokens: list[tuple[str, str]]) -> set[str]:
    """Metric names inside one ``{...}``: ``__name__="x"`` and, as Prometheus 3 allows, a bare ``"x"``."""
    names = set()
    for index, (kind, text) in enumerate(tokens):
        if kind != "string":
            continue
        before = tokens[index - 1] if index else ("other", "{")
        if before[1] in ("{", ","):
            names.add(_unquote(text))
        elif before == ("matcher", "=") and index >= 2 and tokens[index - 2][1] == "__name__":
            names.add(_unquote(text))
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: bare identifiers that are not functions, aggregations,
    keywords, label names or number literals, and the values of ``__name__="..."`` matchers.

    >>> sorted(metric_names('sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) / on(job) up'))
    ['http_requests_total', 'up']
    """
    tokens = _tokens(expr)
    names = set()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else None
        if text == "{":
            end = _closing(tokens, index, "{", "}")
            names |= _matcher_names(tokens[index + 1:end])
            index = end
        elif text == "[":
            # A range or a subquery's range and step: durations or a dashboard's variable.
            index = _closing(tokens, index, "[", "]")
        elif kind == "ident" and text in GROUPING and following == "(":
            index = _closing(tokens, index + 1, "(", ")")
        elif kind == "ident" and not _is_keyword(text) and following not in ("(", "by", "without"):
            names.add(text)
        index += 1
    return names


def _is_keyword(text: str) -> bool:
    return text in KEYWORDS or text.lower() in NUMBERS


def _uid(datasource: object) -> Optional[str]:
    """A panel's or target's datasource: ``{"type", "uid"}`` or, in old dashboards, a name."""
    if isinstance(datasource, dict):
        return datasource.get("uid")
    if isinstance(datasource, str):
        return datasource
    return None


def _panels(panels: list) -> list[dict]:
    """Every panel, rows' nested panels (a collapsed row holds its own) after their row."""
    found = []
    for panel in panels or []:
        found.append(panel)
        found.extend(_panels(panel.get("panels", [])))
    return found


def dashboard_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """``(panel title, datasource uid, expression)`` of every target of every panel of a Grafana
    dashboard (JSON model), rows' nested panels included; a target without its own datasource uses
    its panel's."""
    queries = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []) or []:
            uid = _uid(target.get("datasource")) or _uid(panel.get("datasource")) or ""
            queries.append((panel.get("title", ""), uid, target.get("expr", "")))
    return queries
