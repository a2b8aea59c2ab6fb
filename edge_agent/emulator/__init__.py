"""A local Live API server speaking the real wire protocol (the unmodified SDK connects to it)."""

from edge_agent.emulator.server import Emulator, EmulatorOptions

__all__ = ["Emulator", "EmulatorOptions"]
