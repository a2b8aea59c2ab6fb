"""The emulator's deterministic "model": which declared function a user's words call, with
which arguments, what code it runs, and the words of its answer.

A function is called when the user's words name it or match words of its description; its
arguments satisfy the declaration's schema (enums, defaults, types; required fields filled),
taking values from the user's words where they can.
"""

from __future__ import annotations

import ast
import json
import operator
import re
from dataclasses import dataclass
from typing import Any

_STOPWORDS = """a an and are as at be by can could do does did for from get give has have how i
if in is it its me my of on or please say says set show tell than that the their them then there
this to up use user was what when where which who why will with would you your yes no not one all
any some about into just like model call calls"""
STOPWORDS = frozenset(_STOPWORDS.split())
NAME_WEIGHT = 2  # a word of the function's name counts more than a word of its description
SAME_ACTION = {"switch": "turn", "shut": "turn", "dim": "set", "brighten": "set"}
_WORD = re.compile(r"[a-z0-9]+")
_PROPER_NOUN = re.compile(
    r"\b(?:in|for|to|at|called|named|about)\s+([A-Z][\w-]*(?:\s+[A-Z][\w-]*)*)"
)
_ARITHMETIC = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:\s*[-+*/^x]\s*\d+(?:\.\d+)?)+)")
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


@dataclass(frozen=True)
class Declaration:
    name: str
    description: str
    schema: dict[str, Any]
    behavior: str  # BLOCKING, NON_BLOCKING or UNSPECIFIED (the model's default)


def declarations(setup: dict[str, Any]) -> list[Declaration]:
    found = []
    for tool in setup.get("tools", []):
        for declared in tool.get("functionDeclarations", []):
            schema = declared.get("parametersJsonSchema") or declared.get("parameters") or {}
            found.append(
                Declaration(
                    name=str(declared.get("name", "")),
                    description=str(declared.get("description", "")),
                    schema=schema if isinstance(schema, dict) else {},
                    behavior=str(declared.get("behavior", "UNSPECIFIED")),
                )
            )
    return found


def has_tool(setup: dict[str, Any], kind: str) -> bool:
    return any(kind in tool for tool in setup.get("tools", []))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _name_words(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ")
    return set(words(spaced))


def said_words(text: str) -> set[str]:
    """The user's words, with the usual other words for the same action ("switch off")."""
    said = set(words(text))
    return said | {SAME_ACTION[w] for w in said if w in SAME_ACTION}


def namespace_words(declared: list[Declaration]) -> set[str]:
    """Name words most declarations share (Home Assistant's "Hass"): no one says them."""
    counts: dict[str, int] = {}
    for declaration in declared:
        for word in _name_words(declaration.name):
            counts[word] = counts.get(word, 0) + 1
    return {w for w, n in counts.items() if len(declared) > 2 and n > len(declared) / 2}


def pick_function(text: str, declared: list[Declaration]) -> Declaration | None:
    """The declaration the words call: the best score of name and description words (a word
    of the name the user did not say counts against it: "turn on" is not turn_off_...)."""
    said = said_words(text)
    shared = namespace_words(declared)
    best, best_score = None, 0
    for declaration in declared:
        description = {
            w for w in words(declaration.description) if w not in STOPWORDS and len(w) > 2
        }
        name = _name_words(declaration.name) - shared
        content = name - STOPWORDS
        score = len(said & (description - name))
        if said & content:
            score += NAME_WEIGHT * len(said & name) - len(content - said)
        if score > best_score:
            best, best_score = declaration, score
    return best


def arguments(schema: dict[str, Any], text: str, function: str = "") -> dict[str, Any]:
    value = _value(schema, text, "")
    if not isinstance(value, dict):
        return {}
    properties = schema.get("properties") or {}
    if not value and "name" in properties:  # "switch off the kitchen light": what it acts on
        thing = _object_words(text, _name_words(function))
        if thing:
            value["name"] = thing
    return value


def _object_words(text: str, action: set[str]) -> str:
    """The words that are not the action nor small words, as a name: "Kitchen Light"."""
    said = [w for w in words(text) if w not in STOPWORDS and w not in action]
    said = [w for w in said if SAME_ACTION.get(w) not in action and w not in ("off", "on")]
    return " ".join(w.capitalize() for w in said)


def _type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if str(k).lower() != "null"), "string")
    return str(kind).lower()


def _value(schema: dict[str, Any], text: str, name: str) -> Any:
    if schema.get("enum"):
        options = list(schema["enum"])
        said = set(words(text))
        mentioned = [o for o in options if str(o).lower() in said or str(o).lower() in text.lower()]
        return mentioned[0] if mentioned else schema.get("default", options[0])
    kind = _type(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        result = {}
        for key, sub in properties.items():
            sub = sub if isinstance(sub, dict) else {}
            if key in required or "default" in sub or _mentioned(key, text):
                result[key] = _value(sub, text, key)
        return result
    if kind in ("integer", "number") and re.search(r"\d", text):
        return _number(schema, text, kind == "integer")  # the number said, not a default
    if "default" in schema:
        return schema["default"]
    if kind in ("integer", "number"):
        return _number(schema, text, kind == "integer")
    if kind == "boolean":
        said = set(words(text))
        return not (said & {"off", "false", "disable", "stop", "no"})
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [_value(items or {"type": "string"}, text, name)]
    return _string(text, name)


def _mentioned(key: str, text: str) -> bool:
    return bool((_name_words(key) - STOPWORDS) & set(words(text)))


def _number(schema: dict[str, Any], text: str, integer: bool) -> int | float:
    found = re.findall(r"-?\d+(?:\.\d+)?", text)
    value = float(found[0]) if found else float(schema.get("minimum", 0))
    if "minimum" in schema:
        value = max(value, float(schema["minimum"]))
    if "maximum" in schema:
        value = min(value, float(schema["maximum"]))
    return int(value) if integer else value


def _string(text: str, name: str) -> str:
    """A capitalised word after "in", "for", "to"... (a place, a name), else the user's words."""
    match = _PROPER_NOUN.search(text)
    if match:
        return match.group(1)
    stripped = text.strip().rstrip("?.!")
    return stripped or name


_WORD_FOR_WORD = re.compile(r'word for word[^"]*:\s*"(.+)"\s*$', re.S | re.I)
_REMINDER = re.compile(r'this reminder[^"]*:\s*"(.+)"\s*$', re.S | re.I)


def read_aloud(text: str) -> str | None:
    """The answer to an instruction to read a quoted text word for word (an announcement) or
    to say a reminder: the text itself, or "Here is your reminder: ..."."""
    quoted = _WORD_FOR_WORD.search(text)
    if quoted:
        return quoted.group(1)
    reminder = _REMINDER.search(text)
    return f"Here is your reminder: {reminder.group(1).rstrip('.')}." if reminder else None


def urls(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"'<>]+[^\s\"'<>.,;:!?)]", text)


def arithmetic(text: str) -> tuple[str, str] | None:
    """("print(6 * 7)", "42") for words holding a sum, else None."""
    spelled = text.replace("×", "*")
    for word, sign in (("times", "*"), ("plus", "+"), ("minus", "-"), ("divided by", "/")):
        spelled = re.sub(rf"\b{word}\b", sign, spelled)
    match = _ARITHMETIC.search(spelled)
    if match is None:
        return None
    expression = re.sub(r"\s*x\s*", " * ", match.group(1)).replace("^", "**")
    try:
        result = _evaluate(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    shown = f"{result:g}" if isinstance(result, float) else str(result)
    return f"print({expression})", shown


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)  # type: ignore[no-any-return]
    raise ValueError("not arithmetic")


def describe_response(name: str, response: dict[str, Any]) -> str:
    """Words for a function's response, as a spoken answer would use it."""
    body = response.get("response", response)
    if isinstance(body, dict) and "error" in body:
        return f"The {name} call failed: {_spoken(body['error'])}."
    if isinstance(body, dict) and set(body) == {"output"}:
        body = body["output"]
    if isinstance(body, dict) and "text" in body and set(body) <= {"text", "structured"}:
        body = body["text"]  # an MCP result: its words, not its structure a second time
    elif isinstance(body, dict) and set(body) == {"structured"}:
        body = body["structured"]
    return f"Here is what {name.replace('_', ' ')} says: {_spoken(body)}."


def _spoken(value: Any, limit: int = 6) -> str:
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if v not in (None, "", [], {})][:limit]
        return ", ".join(f"{str(k).replace('_', ' ')} {_spoken(v, 3)}" for k, v in items)
    if isinstance(value, list):
        return ", ".join(_spoken(v, 3) for v in value[:limit])
    if isinstance(value, str):
        return value[:200]
    return json.dumps(value)
