"""Tools the model may call: a callable with a name, a description and a JSON schema.

Third-party packages add tools through the entry point group `edge_agent.tools`; each entry
point names a Tool (made with @tool). Tools are enabled by name in `[tools] enabled`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "edge_agent.tools"
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    function: Callable[..., Any]  # sync (runs in a thread) or async (runs on the loop)
    parameters: dict[str, Any] = field(default_factory=lambda: dict(NO_ARGUMENTS))
    non_blocking: bool = False  # the model keeps talking while it runs
    scheduling: str = "WHEN_IDLE"  # for non-blocking results: INTERRUPT, WHEN_IDLE, SILENT
    secret: tuple[str, ...] = ()  # argument names never written to the log
    needs_context: bool = False  # called with a ToolContext as the first argument
    timeout_s: float | None = None  # None: [tools] timeout_s
    origin: str = ""  # where a tool from elsewhere comes from, e.g. "MCP server ha"

    def declaration(self, non_blocking_supported: bool) -> dict[str, Any]:
        declared: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters_json_schema": self.parameters,
        }
        if self.non_blocking and non_blocking_supported:
            declared["behavior"] = "NON_BLOCKING"
        return declared


class ToolSource(Protocol):
    """Tools that come and go while the agent runs (MCP servers): asked before each session."""

    def tools(self) -> list[Tool]: ...


def tool(
    description: str,
    parameters: dict[str, Any] | None = None,
    *,
    name: str = "",
    non_blocking: bool = False,
    scheduling: str = "WHEN_IDLE",
    secret: Iterable[str] = (),
    needs_context: bool = False,
) -> Callable[[Callable[..., Any]], Tool]:
    """Decorator: turns a function into a Tool."""

    def wrap(function: Callable[..., Any]) -> Tool:
        return Tool(
            name=name or function.__name__,
            description=description,
            function=function,
            parameters=parameters or dict(NO_ARGUMENTS),
            non_blocking=non_blocking,
            scheduling=scheduling,
            secret=tuple(secret),
            needs_context=needs_context,
        )

    return wrap


def discover(builtins: Iterable[Tool]) -> dict[str, Tool]:
    """Built-ins plus every installed `edge_agent.tools` entry point, by name."""
    found = {t.name: t for t in builtins}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
        except Exception as exc:  # a broken plug-in must not take the agent down
            log.warning("tool plug-in %s cannot be loaded: %s", point.value, exc)
            continue
        if not isinstance(loaded, Tool):
            log.warning("tool plug-in %s is not a Tool (use @edge_agent.tools.tool)", point.value)
            continue
        found[loaded.name] = loaded
    return found


def enabled_tools(names: Iterable[str], available: dict[str, Tool]) -> list[Tool]:
    for problem in missing_tools(names, available):
        log.warning("%s", problem)
    return [available[name] for name in names if name in available]


def missing_tools(names: Iterable[str], available: dict[str, Tool]) -> list[str]:
    """One line per enabled tool that is not installed (`run` logs them, `check` prints them)."""
    known = ", ".join(sorted(available))
    return [
        f"tool {name!r} is enabled but not installed (known: {known})"
        for name in names
        if name not in available
    ]
