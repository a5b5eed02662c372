"""RSE expressions: which storage elements a rule may use, said in one short line.

``offsite&type=tape``, ``CTAO-N|PIC``, ``offsite\\PIC``, ``country=ES``: rules name sets of RSEs
by their properties rather than by listing them, so a data center added to the configuration
is used by existing rules without editing them. The grammar (``&`` binds tighter than ``|``
and ``\\``, which are left-associative; whitespace is ignored)::

    expr  := term (("|" | "\\") term)*         union, difference
    term  := atom ("&" atom)*                  intersection
    atom  := "(" expr ")" | "*" | word | key op value
    op    := "=" | "!=" | "<" | "<=" | ">" | ">="

A bare word is an RSE name, else a boolean attribute (true on the RSEs selected). Every RSE
has implicit attributes derived from the configuration: ``name``, ``site``, ``kind`` and
``type`` (disk/tape; a configured ``type`` attribute wins), ``onsite``/``offsite``,
``disk``/``tape`` and ``available`` (from the catalog), besides its configured ``attributes``
(``country``, ``tier``, ...). Values compare case-insensitively; ``<``-style operators need
numbers. Mistakes are errors pointing at their position, checked against the configured RSEs,
so ``PICC`` or ``contry=ES`` fails loudly instead of selecting nothing.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from dpps.core.config import Config
from dpps.core.errors import InvalidInput
from dpps.core.states import RSEKind

Scalar = str | int | float | bool

_WORD: Final = re.compile(r"[A-Za-z0-9_.:/+@-]+")
_OPS: Final = ("!=", "<=", ">=", "=", "<", ">")
_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class RSEExpressionError(InvalidInput):
    """An expression that cannot be parsed or names nothing known; ``position`` is 1-based."""

    def __init__(self, text: str, position: int, detail: str) -> None:
        self.text, self.position, self.detail = text, position, detail
        caret = " " * (position - 1) + "^"
        super().__init__(
            f"RSE expression error at position {position}: {detail}\n  {text}\n  {caret}"
        )


@dataclass(frozen=True, slots=True)
class RSEFacts:
    """What an expression can ask about one RSE."""

    name: str
    site: str
    kind: str
    onsite: bool
    available: bool = True
    attributes: Mapping[str, Scalar] = field(default_factory=dict)

    def attribute(self, key: str) -> Scalar | None:
        return self.all_attributes().get(key.lower())

    def all_attributes(self) -> dict[str, Scalar]:
        implicit: dict[str, Scalar] = {
            "name": self.name,
            "site": self.site,
            "kind": self.kind,
            "type": self.kind,
            "onsite": self.onsite,
            "offsite": not self.onsite,
            "disk": self.kind == RSEKind.DISK.value,
            "tape": self.kind == RSEKind.TAPE.value,
            "available": self.available,
        }
        return implicit | {k.lower(): v for k, v in self.attributes.items()}


def facts_from_config(
    config: Config, available: Mapping[str, bool] | None = None
) -> list[RSEFacts]:
    """One RSEFacts per configured RSE; ``available`` comes from the catalog when known."""
    return [
        RSEFacts(
            name=name,
            site=rse.site,
            kind=rse.kind.value,
            onsite=rse.onsite,
            available=(available or {}).get(name, True),
            attributes=dict(rse.attributes),
        )
        for name, rse in sorted(config.rses.items())
    ]


# -- syntax ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    key: str
    op: str
    value: str
    pos: int


@dataclass(frozen=True, slots=True)
class Everything:
    pos: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # "&", "|" or "\\"
    left: Node
    right: Node


Node = Word | Compare | Everything | Binary


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "op", "punct", "end"
    text: str
    pos: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "()&|\\*":
            tokens.append(_Token("punct", ch, i + 1))
            i += 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            tokens.append(_Token("op", op, i + 1))
            i += len(op)
            continue
        match = _WORD.match(text, i)
        if match is None:
            raise RSEExpressionError(text, i + 1, f"unexpected character {ch!r}")
        tokens.append(_Token("word", match.group(), i + 1))
        i = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, token: _Token, detail: str) -> RSEExpressionError:
        return RSEExpressionError(self.text, token.pos, detail)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail(self.peek(), "empty RSE expression")
        node = self.expr()
        token = self.peek()
        if token.kind != "end":
            raise self.fail(token, f"unexpected {token.text!r}: expected '&', '|', '\\' or end")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek().text in ("|", "\\") and self.peek().kind == "punct":
            op = self.take().text
            node = Binary(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.atom()
        while self.peek().kind == "punct" and self.peek().text == "&":
            self.take()
            node = Binary("&", node, self.atom())
        return node

    def atom(self) -> Node:
        token = self.take()
        if token.kind == "punct" and token.text == "(":
            node = self.expr()
            closing = self.take()
            if closing.text != ")":
                raise self.fail(closing, f"missing ')' for the '(' at position {token.pos}")
            return node
        if token.kind == "punct" and token.text == "*":
            return Everything(token.pos)
        if token.kind != "word":
            what = "end of expression" if token.kind == "end" else repr(token.text)
            raise self.fail(token, f"expected an RSE name or attribute, got {what}")
        if self.peek().kind != "op":
            return Word(token.text, token.pos)
        op = self.take()
        value = self.take()
        if value.kind != "word":
            raise self.fail(value, f"expected a value after {token.text}{op.text}")
        return Compare(token.text, op.text, value.text, token.pos)


def parse(text: str) -> Node:
    """The syntax tree of ``text``; RSEExpressionError with a position when malformed."""
    if not isinstance(text, str):
        raise InvalidInput(f"an RSE expression must be a string, not {type(text).__name__}")
    return _Parser(text).parse()


# -- meaning ---------------------------------------------------------------------------------


def _truthy(value: Scalar | None) -> bool | None:
    """True/False for boolean-like values, None for values that are not booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _number(value: Scalar | None) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class _Evaluator:
    def __init__(self, text: str, facts: Sequence[RSEFacts]) -> None:
        self.text = text
        self.facts = list(facts)
        self.names = {f.name for f in facts}
        self.keys = sorted({k for f in facts for k in f.all_attributes()})

    def fail(self, pos: int, detail: str) -> RSEExpressionError:
        return RSEExpressionError(self.text, pos, detail)

    def hint(self, word: str, choices: Sequence[str]) -> str:
        close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def run(self, node: Node) -> set[str]:
        if isinstance(node, Binary):
            left, right = self.run(node.left), self.run(node.right)
            if node.op == "&":
                return left & right
            return left | right if node.op == "|" else left - right
        if isinstance(node, Everything):
            return set(self.names)
        if isinstance(node, Word):
            return self.word(node)
        return self.compare(node)

    def word(self, node: Word) -> set[str]:
        if node.text in self.names:
            return {node.text}
        key = node.text.lower()
        if key not in self.keys:
            raise self.fail(
                node.pos,
                f"{node.text!r} is neither an RSE nor an attribute"
                + self.hint(node.text, sorted(self.names) + self.keys),
            )
        selected: set[str] = set()
        for f in self.facts:
            value = f.attribute(key)
            flag = _truthy(value)
            if flag is None and value is not None:
                raise self.fail(
                    node.pos,
                    f"attribute {node.text!r} is not a boolean on {f.name} ({value!r}): "
                    f"write {node.text}=VALUE",
                )
            if flag:
                selected.add(f.name)
        return selected

    def compare(self, node: Compare) -> set[str]:
        key = node.key.lower()
        if key not in self.keys:
            raise self.fail(
                node.pos, f"unknown RSE attribute {node.key!r}" + self.hint(key, self.keys)
            )
        want_number = _number(node.value)
        if node.op in _COMPARE and want_number is None:
            raise self.fail(node.pos, f"{node.op} needs a number, not {node.value!r}")
        selected: set[str] = set()
        for f in self.facts:
            value = f.attribute(key)
            if value is None:
                continue
            if node.op in _COMPARE:
                have = _number(value)
                if (
                    have is not None
                    and want_number is not None
                    and _COMPARE[node.op](have, want_number)
                ):
                    selected.add(f.name)
                continue
            equal = _equal(value, node.value)
            if equal == (node.op == "="):
                selected.add(f.name)
        return selected


def _equal(value: Scalar, text: str) -> bool:
    flag = _truthy(value)
    if flag is not None:
        return _truthy(text) == flag
    have, want = _number(value), _number(text)
    if have is not None and want is not None:
        return have == want
    return str(value).lower() == text.lower()


def evaluate(text: str, facts: Sequence[RSEFacts]) -> list[str]:
    """Names of the RSEs ``text`` selects among ``facts``, sorted."""
    return sorted(_Evaluator(text, facts).run(parse(text)))


def select(config: Config, text: str, available: Mapping[str, bool] | None = None) -> list[str]:
    """Names of the configured RSEs ``text`` selects, sorted."""
    return evaluate(text, facts_from_config(config, available))
