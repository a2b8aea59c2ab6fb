"""Timers, alarms and reminders the model sets by voice: the schedule, its tools, its sound.

Pure parts only: the agent wires the schedule to the speaker, the page and MQTT.
"""
