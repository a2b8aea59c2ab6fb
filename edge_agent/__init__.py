"""edge-agent: a Raspberry Pi voice agent on the Gemini Live API."""

__version__ = "0.1.0"
