"""The button's gestures (edge_agent/gestures.py), by direct calls on the input timeline."""

from __future__ import annotations

from edge_agent.gestures import DOUBLE_PRESS_S, Button, Gesture


class Recorder:
    """The Agent's commands, as the gestures call them."""

    def __init__(self) -> None:
        self.muted = False
        self.calls: list[str] = []

    def open_conversation(self, reason: str) -> bool:
        self.calls.append(f"open {reason}")
        return True

    def close_conversation(self, reason: str) -> None:
        self.calls.append(f"close {reason}")

    def barge_in(self) -> bool:
        self.calls.append("barge in")
        return True

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        self.calls.append(f"muted {muted}")

    def talk(self) -> None:
        self.calls.append("talk")

    def talk_end(self) -> None:
        self.calls.append("talk end")


def press(button: Button, at: float, is_open: bool, held_s: float = 0.1) -> list[Gesture | None]:
    seen = []
    for pressed, now in ((True, at), (False, at + held_s)):
        gesture = button.change(pressed, now, is_open)
        if gesture is not None:
            button.act(gesture, is_open)
        seen.append(gesture)
    return seen


def test_a_press_opens_a_conversation_and_in_one_cuts_the_answer() -> None:
    commands = Recorder()
    button = Button(commands, push_to_talk=False, long_press_s=2.0)
    assert press(button, 1.0, is_open=False) == [Gesture.PRESS, None]
    assert press(button, 5.0, is_open=True) == [Gesture.PRESS, None]
    assert commands.calls == ["open button", "barge in"]


def test_a_double_press_ends_the_conversation_only_when_one_is_open() -> None:
    commands = Recorder()
    button = Button(commands, push_to_talk=False, long_press_s=2.0)
    press(button, 1.0, is_open=True)
    soon = 1.1 + DOUBLE_PRESS_S - 0.05
    assert press(button, soon, is_open=True)[0] is Gesture.DOUBLE_PRESS
    assert commands.calls[-1] == "close double press"
    press(button, 10.0, is_open=False)
    assert press(button, 10.2, is_open=False)[0] is Gesture.PRESS  # nothing open to end
    late = 20.0
    press(button, late, is_open=True)
    assert press(button, late + 0.1 + DOUBLE_PRESS_S, is_open=True)[0] is Gesture.PRESS


def test_a_long_press_mutes_and_unmutes() -> None:
    commands = Recorder()
    button = Button(commands, push_to_talk=False, long_press_s=2.0)
    assert press(button, 1.0, is_open=False, held_s=2.0) == [Gesture.PRESS, Gesture.LONG_PRESS]
    assert commands.muted
    press(button, 10.0, is_open=False, held_s=2.5)
    assert not commands.muted
    assert press(button, 20.0, is_open=False, held_s=1.9)[1] is None


def test_push_to_talk_press_and_release() -> None:
    commands = Recorder()
    button = Button(commands, push_to_talk=True, long_press_s=2.0)
    assert press(button, 1.0, is_open=False, held_s=3.0) == [Gesture.TALK, Gesture.TALK_END]
    assert commands.calls == ["talk", "talk end"]  # held long: still talk, never mute
    assert press(button, 4.2, is_open=True)[0] is Gesture.DOUBLE_PRESS


def test_repeated_reports_are_no_gesture() -> None:
    button = Button(Recorder(), push_to_talk=False, long_press_s=2.0)
    assert button.change(True, 1.0, False) is Gesture.PRESS and button.held
    assert button.change(True, 1.1, False) is None and button.held
    assert button.change(False, 1.2, False) is None and not button.held
    assert button.change(False, 1.3, False) is None
