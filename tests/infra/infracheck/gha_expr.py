"""A small evaluator for the GitHub Actions expressions our workflows use in job ``if:`` keys.

Supported (the subset the workflows use, with GitHub's documented semantics):

- literals: ``'string'`` (``''`` escapes a quote), ``true``, ``false``, ``null``, integers;
- context paths: ``needs.<job>.result``, ``needs.<job>.outputs.<name>``, ``inputs.<name>``,
  ``github.<name>``; job ids may contain ``-``; an unknown property is ``null``;
- operators ``!``, ``==``, ``!=``, ``&&``, ``||`` and parentheses, with GitHub's precedence
  (``!`` > ``==``/``!=`` > ``&&`` > ``||``); ``&&``/``||`` return an operand, as in GitHub;
- ``==`` compares strings case-insensitively; other type mixes are compared as numbers
  (null -> 0, booleans -> 1/0, strings parsed, NaN never equal), as GitHub does;
- status functions for a *job* ``if``: ``always()``; ``success()`` (every ancestor job
  succeeded); ``failure()`` (some ancestor job failed); ``cancelled()`` (the run was
  cancelled). An ``if`` without a status function is evaluated as ``success() && (<if>)``;
- ``startsWith(a, b)`` and ``endsWith(a, b)``: case-insensitive, arguments cast to strings
  (null -> ``''``), as GitHub does.

Not supported (raises ``ExpressionError``, so a workflow that starts using them makes the test
fail loudly rather than evaluate wrongly): ``<``/``>`` comparisons, index syntax ``a['b']``,
``*`` object filters, and every other function (``contains``, ``format``, ``toJSON``,
``hashFiles``...). Step-level status semantics (``failure()`` inside a job's steps)
are not modelled: only job ``if`` keys are evaluated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")
STRING_FUNCTIONS = {
    "startsWith": lambda text, prefix: text.startswith(prefix),
    "endsWith": lambda text, suffix: text.endswith(suffix),
}


class ExpressionError(ValueError):
    """The expression is malformed or uses something this evaluator does not model."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+)
      | (?P<op>==|!=|&&|\|\||!|\(|\)|\.|,)
      | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-space character
            raise ExpressionError(f"cannot read {text[pos:]!r}")
        kind = m.lastgroup or ""
        if kind == "bad":
            raise ExpressionError(f"unsupported character {m.group(kind)!r} in {text!r}")
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


@dataclass
class JobContext:
    """What a job's ``if`` can see: its needs, the run's state, and a few contexts."""

    needs: Mapping[str, Mapping[str, Any]]  # job id -> {"result": ..., "outputs": {...}}
    ancestor_results: Mapping[str, str] = field(default_factory=dict)  # every ancestor job
    cancelled: bool = False
    github: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def results(self) -> list[str]:
        merged = {job: str(n.get("result")) for job, n in self.needs.items()}
        merged.update(self.ancestor_results)
        return list(merged.values())


class _Parser:
    def __init__(self, text: str, ctx: JobContext) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.ctx = ctx

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise ExpressionError(f"expected {value or 'more'} in {self.text!r}")
        self.pos += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return value

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            left = left if truthy(left) else right
        return left

    def and_(self) -> Any:
        left = self.equality()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.equality()
            left = right if truthy(left) else left
        return left

    def equality(self) -> Any:
        left = self.unary()
        while self.peek() in (("op", "=="), ("op", "!=")):
            op = self.take()[1]
            right = self.unary()
            left = equals(left, right) if op == "==" else not equals(left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, value = self.take()
        if value == "(" and kind == "op":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            return int(value)
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r} in {self.text!r}")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if self.peek() == ("op", "("):
            self.take()
            args = []
            if self.peek() != ("op", ")"):
                args.append(self.or_())
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self.or_())
            self.take(")")
            if value in STRING_FUNCTIONS:
                if len(args) != 2:
                    raise ExpressionError(f"{value}() takes two arguments in {self.text!r}")
                return STRING_FUNCTIONS[value](*(_string(a).casefold() for a in args))
            if args:
                raise ExpressionError(f"{value}() takes no arguments in {self.text!r}")
            return self.call(value)
        return self.path(value)

    def call(self, name: str) -> bool:
        if name == "always":
            return True
        if name == "cancelled":
            return self.ctx.cancelled
        if name == "success":
            return not self.ctx.cancelled and all(r == "success" for r in self.ctx.results())
        if name == "failure":
            return any(r == "failure" for r in self.ctx.results())
        raise ExpressionError(f"function {name}() is not modelled by this evaluator")

    def path(self, root: str) -> Any:
        roots: dict[str, Any] = {
            "needs": self.ctx.needs,
            "github": self.ctx.github,
            "inputs": self.ctx.inputs,
        }
        if root not in roots:
            raise ExpressionError(f"context {root!r} is not modelled by this evaluator")
        value: Any = roots[root]
        while self.peek() == ("op", "."):
            self.take()
            kind, name = self.take()
            if kind != "name":
                raise ExpressionError(f"expected a property name after '.' in {self.text!r}")
            value = value.get(name) if isinstance(value, Mapping) else None
        return value


def _string(value: Any) -> str:
    """GitHub's cast of a function argument to a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "")


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        try:
            return float(int(text, 0)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    return math.nan  # objects and arrays


def equals(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if type(left) is type(right) and not isinstance(left, int | float):
        return bool(left == right)
    a, b = _number(left), _number(right)
    return not (math.isnan(a) or math.isnan(b)) and a == b


def strip_braces(expression: str) -> str:
    text = str(expression).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    return text.strip()


def uses_status_function(expression: str) -> bool:
    return any(
        kind == "name" and value in STATUS_FUNCTIONS
        for kind, value in _tokenize(strip_braces(expression))
    )


def evaluate_job_if(expression: str | bool | None, ctx: JobContext) -> bool:
    """Whether a job with this ``if`` (None: no ``if``) runs in the given situation."""
    if expression is None:
        expression = "success()"
    if isinstance(expression, bool):
        expression = "true" if expression else "false"
    text = strip_braces(expression)
    if not uses_status_function(text):
        text = f"success() && ({text})"
    return truthy(_Parser(text, ctx).parse())


def evaluate(expression: str, ctx: JobContext) -> Any:
    """The value of an expression (no implicit ``success()``): for tests of the evaluator."""
    return _Parser(strip_braces(expression), ctx).parse()
