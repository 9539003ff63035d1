"""`calculator`: arithmetic on numbers, parsed with `ast` and walked by hand (never `eval`).

Allowed: numbers, + - * / // % **, unary + and -, parentheses, and a few math
functions. Exponents and results are bounded, so `9**9**9` is refused rather
than computed.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from server.agents.tools.base import function, text_argument
from server.errors import ToolFailed

MAX_EXPRESSION = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max,
    "log": math.log, "exp": math.exp, "sin": math.sin, "cos": math.cos, "tan": math.tan,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}

DEFINITION = function(
    "calculator",
    "Evaluate an arithmetic expression, e.g. '(2 + 3) * 4 / sqrt(16)'.",
    {"expression": {"type": "string", "description": "The expression."}},
    ["expression"],
)


class Calculator:
    name = "calculator"
    definition = DEFINITION

    async def run(self, arguments: dict[str, Any]) -> str:
        return evaluate(text_argument(arguments, "expression"))


def evaluate(expression: str) -> str:
    """The value of `expression` as text (integers without a fraction)."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolFailed(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        value = _value(tree.body)
    except ToolFailed:
        raise
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError) as e:
        raise ToolFailed(f"cannot evaluate {expression!r}: {e}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    return str(value)


def _value(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolFailed(f"exponent {right} is larger than {MAX_EXPONENT}")
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if _is_call(node):
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _bounded(_FUNCTIONS[node.func.id](*(_value(a) for a in node.args)))
    raise ToolFailed(f"not arithmetic: {ast.unparse(node)!r}")


def _is_call(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    )


def _bounded(value: Any) -> Any:
    if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE:
        raise ToolFailed("result out of range")
    return value
