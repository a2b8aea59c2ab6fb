"""What a person meets on a real Pi: the docs in the repository, the sandbox's /proc, the wiring,
the installer and the command line."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_the_docs_are_in_the_repository_and_carry_every_config_key() -> None:
    readme = (REPO / "README.md").read_text()
    assert "docs/architecture.md" in readme and "docs/interface.md" in readme
    assert "CONTRACT.md" not in readme and "ARCHITECTURE.md" not in readme
    interface = (REPO / "docs" / "interface.md").read_text()
    default = (REPO / "config" / "default.toml").read_text()
    assert f"```toml\n{default}```" in interface  # regenerate: see the markers in interface.md
    for link in re.findall(r"\]\(([^)#]+)\)", readme + interface):
        if not link.startswith("http"):
            base = REPO if link.startswith("docs/") else REPO / "docs"
            assert (base / link).exists() or (REPO / link).exists(), link
