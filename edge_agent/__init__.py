"""edge-agent: a Raspberry Pi voice agent on the Gemini Live API."""

import os

# numpy's OpenBLAS starts a thread per core that spins after use; nothing here multiplies
# matrices, so one thread is plenty (fewer wake-ups and less memory on a Pi).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
