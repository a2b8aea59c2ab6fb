"""What an emulator is started with: where it listens, what it accepts, the faults it makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.emulator.scenario import Scenario


@dataclass
class EmulatorOptions:
    host: str = "127.0.0.1"
    port: int = 0
    cert_dir: Path = Path(".")
    api_key: str = ""  # "" = any non-empty key
    reject_models: tuple[str, ...] = ()
    any_model: bool = False  # accept a model the table does not know, with the default's rules
    scenario: Scenario = field(default_factory=Scenario)
    log_path: Path | None = None
    goaway_every: float = 0.0
    goaway_time_left_s: float = 50.0
    drop_every: float = 0.0
    latency_ms: int = 0
    no_setup_complete: bool = False
    silent_after_goaway: bool = False
    clock_scale: float = 1.0
    pace: float = 4.0  # answers stream this many times faster than real time
