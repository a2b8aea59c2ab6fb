"""A config that does not validate, told as one line: which key, what is wrong, what is expected
(a typo in a key gets the nearest valid name)."""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


def describe_error(exc: ValidationError, data: dict[str, Any], schema: type[BaseModel]) -> str:
    """The first problem as one line: which key, what is wrong, what is expected."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    if not loc:  # a rule across sections names its keys itself
        return str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return _unknown_key(loc, schema)
    value = _lookup(data, loc)
    where = _where(loc)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "literal_error":
        message = "expected " + message.removeprefix("Input should be ")
    if isinstance(value, dict) or loc[-1] == "password":  # a password is never echoed
        return f"{where}: {message}"
    return f"{where}: {message} (got {value!r})"


def _unknown_key(loc: list[str], schema: type[BaseModel]) -> str:
    *parents, name = loc
    model = schema
    for part in parents:
        if part.isdigit():  # an entry of a list of tables: [[mcp.servers]]
            continue
        field = model.model_fields[part].annotation
        if get_origin(field) is list:
            field = get_args(field)[0]
        if not (isinstance(field, type) and issubclass(field, BaseModel)):
            break
        model = field
    valid = list(model.model_fields)
    what = "section" if not parents else "key"
    hint = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (valid: {', '.join(valid)})"
    return f"{_where(loc)}: unknown {what}{suggestion}"


def _where(loc: list[str]) -> str:
    if len(loc) == 1:
        return f"[{loc[0]}]"
    return f"[{loc[0]}] {'.'.join(loc[1:])}"


def _lookup(data: Any, loc: list[str]) -> Any:
    for part in loc:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data
