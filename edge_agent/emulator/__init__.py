"""A local Live API server speaking the real wire protocol (the unmodified SDK connects to it).

`edge_agent.emulator.server.Emulator` is the server; `cli` adds the `emulator` command.
"""
