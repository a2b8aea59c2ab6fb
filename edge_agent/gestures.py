"""The button's gestures, read from its presses and releases on the input timeline, and what
each one asks of the Agent: a press opens a conversation (or cuts the answer), a double press
ends it, a long press mutes or unmutes the microphone; in push-to-talk, a press opens a turn
and the release ends it."""

from __future__ import annotations

from enum import Enum
from typing import Protocol

DOUBLE_PRESS_S = 0.5  # a press this soon after a release, in a conversation, is a double press


class Gesture(Enum):
    PRESS = "press"
    DOUBLE_PRESS = "double press"
    LONG_PRESS = "long press"  # released after long_press_s (not in push-to-talk)
    TALK = "talk"  # push-to-talk: pressed
    TALK_END = "talk end"  # push-to-talk: released


class Commands(Protocol):
    """What the gestures ask of the Agent."""

    muted: bool

    def open_conversation(self, reason: str) -> bool: ...
    def close_conversation(self, reason: str) -> None: ...
    def barge_in(self) -> bool: ...
    def set_muted(self, muted: bool) -> None: ...
    def talk(self) -> None: ...
    def talk_end(self) -> None: ...


class Button:
    def __init__(self, commands: Commands, push_to_talk: bool, long_press_s: float) -> None:
        self.commands = commands
        self.push_to_talk = push_to_talk
        self.long_press_s = long_press_s
        self.held = False
        self._pressed_at = -10.0
        self._released_at = -10.0

    def change(self, pressed: bool, now: float, conversation_open: bool) -> Gesture | None:
        """The gesture a press or release completes, if any; a repeated report is none."""
        if pressed and not self.held:
            self.held = True
            double = now - self._released_at < DOUBLE_PRESS_S and conversation_open
            self._pressed_at = now
            if double:
                return Gesture.DOUBLE_PRESS
            return Gesture.TALK if self.push_to_talk else Gesture.PRESS
        if not pressed and self.held:
            self.held = False
            self._released_at = now
            if self.push_to_talk:
                return Gesture.TALK_END
            if now - self._pressed_at >= self.long_press_s:
                return Gesture.LONG_PRESS
        return None

    def act(self, gesture: Gesture, conversation_open: bool) -> None:
        commands = self.commands
        if gesture is Gesture.DOUBLE_PRESS:
            commands.close_conversation("double press")
        elif gesture is Gesture.PRESS and not conversation_open:
            commands.open_conversation("button")
        elif gesture is Gesture.PRESS:
            commands.barge_in()  # in vad mode the button is a manual override
        elif gesture is Gesture.LONG_PRESS:
            commands.set_muted(not commands.muted)
        elif gesture is Gesture.TALK:
            commands.talk()
        else:
            commands.talk_end()
