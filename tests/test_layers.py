"""The package's layers (docs/architecture.md): each module imports only from its own layer and
the ones below, read from the source with `ast` (imports under `if TYPE_CHECKING:` and inside
functions count: they tie names together all the same); and no module is over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edge_agent"

# bottom up; a name is a module or package directly under edge_agent/ ("__init__": the package)
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shared ground", ("__init__", "errors", "events", "config", "config_errors",
                       "config_sections", "logs",
                       "statefiles")),
    ("edges", ("audio", "camera", "gpio", "credentials", "service")),
    ("live/ and tools/", ("live", "tools")),
    ("conversation and start-up", ("conversation", "startup")),
    ("the Agent", ("agent", "answer", "link_status", "turns", "gestures")),
    ("capabilities above the Agent", ("wakeword", "web", "metrics", "mqtt", "reachability",
                                      "timers")),
    ("assembly", ("assembly",)),
    ("emulator", ("emulator",)),
    ("daemon and simulate", ("daemon", "simulate")),
    ("cli", ("cli",)),
    ("__main__", ("__main__",)),
)  # fmt: skip
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}
LAYER_NAME = {name: layer for layer, names in LAYERS for name in names}
# the emulator stands beside the agent's stack: a server built on the shared ground and the
# wire's model list, started only by the daemon, simulate and the cli
EMULATOR_MAY_IMPORT = {"shared ground", "live/ and tools/", "emulator"}
LINE_CAP = 500


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def top_name(path: Path) -> str:
    """The layer key of a file: its first component under edge_agent/, without .py."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import of an edge_agent module in the file."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = ".".join(("edge_agent", *path.relative_to(PACKAGE).parent.parts))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's own package up
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from edge_agent import events` imports the module edge_agent.events
            found += [(node.lineno, _submodule_or_module(base, alias.name)) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] == "edge_agent"]


def _submodule_or_module(base: str, name: str) -> str:
    candidate = PACKAGE.parent.joinpath(*f"{base}.{name}".split("."))
    if candidate.with_suffix(".py").is_file() or candidate.is_dir():
        return f"{base}.{name}"
    return base


def layer_key(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer() -> None:
    unplaced = sorted({top_name(path) for path in modules()} - set(RANK))
    assert not unplaced, f"place these in LAYERS (and docs/architecture.md): {unplaced}"


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = []
    for path in modules():
        own = top_name(path)
        for line, module in imported_modules(path):
            other = layer_key(module)
            if other not in RANK:
                continue  # unplaced: the test above names it
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
            if RANK[other] > RANK[own]:
                upward.append(f"{where} ({LAYER_NAME[own]} -> {LAYER_NAME[other]})")
            elif own == "emulator" and LAYER_NAME[other] not in EMULATOR_MAY_IMPORT:
                upward.append(f"{where} (the emulator builds on the ground and live/ only)")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_checker_sees_every_kind_of_import() -> None:
    agent = {name for _, name in imported_modules(PACKAGE / "agent.py")}
    assert "edge_agent.camera" in agent  # under `if TYPE_CHECKING:`
    assert "edge_agent.events" in agent  # `from edge_agent import events as ev`
    assembly = {name for _, name in imported_modules(PACKAGE / "assembly.py")}
    assert "edge_agent.wakeword" in assembly  # inside a function


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_is_over_the_line_cap(path: Path) -> None:
    lines = len(path.read_text("utf-8").splitlines())
    assert lines <= LINE_CAP, f"{path.relative_to(PACKAGE.parent)}: {lines} lines"
