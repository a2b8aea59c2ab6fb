"""Function tools the model may call on the device. Plug-ins use `tool` and the entry point
group `edge_agent.tools`."""

from edge_agent.tools.registry import Tool, tool

__all__ = ["Tool", "tool"]
