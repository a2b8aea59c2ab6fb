"""Microphone, SpeechGate, Speaker: audio at the device edge."""
