"""Rendering a step's templates when it runs: ``when`` and the strings of its ``params``.

Jinja's ``SandboxedEnvironment`` with ``StrictUndefined``: a template reaching for an unsafe
attribute raises ``SecurityError`` and a missing name raises instead of rendering as empty, so a
typo fails the step with its path rather than calling a URL with a hole in it. Templates were
compiled when the playbook was saved (``definition.py``); here they are rendered with the
execution's context: ``vars``, ``steps.<name>.output|status``, ``execution``.

Every string holding ``{{``, ``{%`` or ``{#`` is rendered to a string (a template never changes
a value's JSON type); other values are kept as they are.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_TEMPLATE_MARK = re.compile(r"{{|{%|{#")


class TemplateFailure(ValueError):
    """A template that cannot be rendered with this context; the message names where."""


class Renderer:
    def __init__(self) -> None:
        self._jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)

    def when(self, expression: str, context: dict[str, Any], where: str) -> bool:
        try:
            return bool(self._jinja.compile_expression(expression)(**context))
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateFailure(f"{where}: {type(exc).__name__}: {exc}") from None

    def params(self, value: Any, context: dict[str, Any], where: str) -> Any:
        """``value`` with every template string in it rendered (a new object)."""
        if isinstance(value, dict):
            return {k: self.params(v, context, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.params(v, context, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and _TEMPLATE_MARK.search(value):
            try:
                return self._jinja.from_string(value).render(**context)
            except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
                raise TemplateFailure(f"{where}: {type(exc).__name__}: {exc}") from None
        return value
