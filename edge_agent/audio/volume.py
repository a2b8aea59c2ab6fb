"""The speaker's one volume control, shared by the set_volume tool and the page.

A percent of `[audio] volume` (the gain at 100 %), applied by the Speaker in software, so it
works the same on every output: a sound card, a USB or Bluetooth speaker, a WAV file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge_agent.audio.playback import Speaker

log = logging.getLogger(__name__)


class Volume:
    def __init__(self, speaker: Speaker, full_gain: float) -> None:
        self.speaker = speaker
        self.full_gain = full_gain
        self.percent = 100
        self.listeners: list[Callable[[int], None]] = []

    def set(self, percent: int) -> int:
        """Clamped to 0..100; applies to the audio queued from now on."""
        self.percent = max(0, min(100, int(percent)))
        self.speaker.volume = self.full_gain * self.percent / 100
        log.info("volume %d %%", self.percent)
        for listener in self.listeners:
            listener(self.percent)
        return self.percent
