"""The Live API wire format: accepted fields, casing, base64, and the JSON the server sends.

Client messages are checked against the field tables below the way the service's proto-JSON
parser does it: camelCase and snake_case at every level, both base64 alphabets, int64 as a
number or a string; an unknown field or a wrong type is an error naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

INT64 = "int64"
BYTES = "bytes"
ANY = "any"  # free-form JSON: kept verbatim
STRUCT = "struct"  # a google.protobuf.Struct (function args, JSON schemas): any JSON object


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Alpha:
    """A field that exists only on v1alpha."""

    spec: Any


class WireError(Exception):
    """A client message the service would refuse; closes the connection with `code`."""

    def __init__(self, reason: str, code: int = 1007) -> None:
        super().__init__(reason)
        self.code = code


BLOB = {"mimeType": str, "data": BYTES, "displayName": str}
FUNCTION_CALL = {"id": str, "name": str, "args": STRUCT, "partialArgs": ANY, "willContinue": bool}
SCHEDULING = Enum(("SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"))
FUNCTION_RESPONSE = {
    "id": str,
    "name": str,
    "response": STRUCT,
    "willContinue": bool,
    "scheduling": SCHEDULING,
    "parts": [{"inlineData": BLOB, "fileData": ANY}],
}
PART = {
    "text": str,
    "inlineData": BLOB,
    "thought": bool,
    "thoughtSignature": BYTES,
    "functionCall": FUNCTION_CALL,
    "functionResponse": FUNCTION_RESPONSE,
    "executableCode": {
        "id": str,
        "language": Enum(("LANGUAGE_UNSPECIFIED", "PYTHON")),
        "code": str,
    },
    "codeExecutionResult": {
        "id": str,
        "outcome": Enum(
            ("OUTCOME_UNSPECIFIED", "OUTCOME_OK", "OUTCOME_FAILED", "OUTCOME_DEADLINE_EXCEEDED")
        ),
        "output": str,
    },
    "fileData": {"mimeType": str, "fileUri": str, "displayName": str},
    "videoMetadata": {"startOffset": str, "endOffset": str, "fps": float},
}
CONTENT = {"role": str, "parts": [PART]}
MODALITY = Enum(("MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO", "VIDEO"))
MEDIA_RESOLUTION = Enum(
    (
        "MEDIA_RESOLUTION_UNSPECIFIED",
        "MEDIA_RESOLUTION_LOW",
        "MEDIA_RESOLUTION_MEDIUM",
        "MEDIA_RESOLUTION_HIGH",
    )
)
SPEECH_CONFIG = {
    "voiceConfig": {"prebuiltVoiceConfig": {"voiceName": str}, "replicatedVoiceConfig": STRUCT},
    "multiSpeakerVoiceConfig": STRUCT,
    "languageCode": str,
}
THINKING_CONFIG = {
    "thinkingBudget": int,
    "thinkingLevel": Enum(("THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH")),
    "includeThoughts": bool,
}
GENERATION_CONFIG = {
    "responseModalities": [MODALITY],
    "responseMimeType": str,
    "temperature": float,
    "topP": float,
    "topK": float,
    "maxOutputTokens": int,
    "seed": int,
    "candidateCount": int,
    "presencePenalty": float,
    "frequencyPenalty": float,
    "stopSequences": [str],
    "mediaResolution": MEDIA_RESOLUTION,
    "speechConfig": SPEECH_CONFIG,
    "thinkingConfig": THINKING_CONFIG,
    "enableAffectiveDialog": Alpha(bool),
    "translationConfig": {"targetLanguageCode": str, "echoTargetLanguage": bool},
}
FUNCTION_DECLARATION = {
    "name": str,
    "description": str,
    "parameters": STRUCT,
    "parametersJsonSchema": ANY,  # any JSON schema, which may be `true`
    "response": STRUCT,
    "responseJsonSchema": ANY,
    "behavior": Enum(("UNSPECIFIED", "BLOCKING", "NON_BLOCKING")),
}
TOOL = {
    "functionDeclarations": [FUNCTION_DECLARATION],
    "googleSearch": {
        "timeRangeFilter": {"startTime": str, "endTime": str},
        "excludeDomains": [str],
        "searchTypes": STRUCT,
        "blockingConfidence": str,
    },
    "googleSearchRetrieval": STRUCT,
    "codeExecution": {},
    "urlContext": {},
    "googleMaps": {"enableWidget": bool, "authConfig": STRUCT, "groundingTypes": [str]},
}
SAFETY_SETTING = {
    "category": Enum(
        (
            "HARM_CATEGORY_UNSPECIFIED",
            "HARM_CATEGORY_HARASSMENT",
            "HARM_CATEGORY_HATE_SPEECH",
            "HARM_CATEGORY_SEXUALLY_EXPLICIT",
            "HARM_CATEGORY_DANGEROUS_CONTENT",
            "HARM_CATEGORY_CIVIC_INTEGRITY",
        )
    ),
    "threshold": Enum(
        (
            "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
            "BLOCK_LOW_AND_ABOVE",
            "BLOCK_MEDIUM_AND_ABOVE",
            "BLOCK_ONLY_HIGH",
            "BLOCK_NONE",
            "OFF",
        )
    ),
    "method": Enum(("HARM_BLOCK_METHOD_UNSPECIFIED", "SEVERITY", "PROBABILITY")),
}
AUTOMATIC_ACTIVITY_DETECTION = {
    "disabled": bool,
    "startOfSpeechSensitivity": Enum(
        ("START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW")
    ),
    "endOfSpeechSensitivity": Enum(
        ("END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW")
    ),
    "prefixPaddingMs": int,
    "silenceDurationMs": int,
}
REALTIME_INPUT_CONFIG = {
    "automaticActivityDetection": AUTOMATIC_ACTIVITY_DETECTION,
    "activityHandling": Enum(
        ("ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION")
    ),
    "turnCoverage": Enum(
        (
            "TURN_COVERAGE_UNSPECIFIED",
            "TURN_INCLUDES_ONLY_ACTIVITY",
            "TURN_INCLUDES_ALL_INPUT",
            "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
        )
    ),
}
TRANSCRIPTION_CONFIG = {
    "languageCodes": [str],
    "customVocabulary": [str],
    "mode": Enum(("MODE_UNSPECIFIED", "VERBATIM", "SMART")),
}
SETUP = {
    "model": str,
    "generationConfig": GENERATION_CONFIG,
    "systemInstruction": CONTENT,
    "tools": [TOOL],
    "realtimeInputConfig": REALTIME_INPUT_CONFIG,
    "sessionResumption": {"handle": str, "transparent": bool},
    "contextWindowCompression": {"triggerTokens": INT64, "slidingWindow": {"targetTokens": INT64}},
    "inputAudioTranscription": TRANSCRIPTION_CONFIG,
    "outputAudioTranscription": TRANSCRIPTION_CONFIG,
    "proactivity": Alpha({"proactiveAudio": bool, "proactiveVideo": bool}),
    "historyConfig": {"initialHistoryInClientContent": bool},
    "safetySettings": [SAFETY_SETTING],
}
REALTIME_INPUT = {
    "audio": BLOB,
    "video": BLOB,
    "text": str,
    "mediaChunks": [BLOB],
    "audioStreamEnd": bool,
    "activityStart": {},
    "activityEnd": {},
}
CLIENT_CONTENT = {"turns": [CONTENT], "turnComplete": bool}
CLIENT_MESSAGE = {
    "setup": SETUP,
    "realtimeInput": REALTIME_INPUT,
    "clientContent": CLIENT_CONTENT,
    "toolResponse": {"functionResponses": [FUNCTION_RESPONSE]},
    "contextUpdate": {"systemInstruction": CONTENT, "tools": {"tools": [TOOL]}},
}

_SNAKE_PART = re.compile(r"_([a-z0-9])")
_CAMEL_PART = re.compile(r"(?<!^)([A-Z])")


def to_camel(name: str) -> str:
    return _SNAKE_PART.sub(lambda m: m.group(1).upper(), name)


def to_snake(name: str) -> str:
    return _CAMEL_PART.sub(r"_\1", name).lower()


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe alphabet, with or without padding."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def parse_client_message(raw: str | bytes, version: str) -> dict[str, Any]:
    """One client frame -> its message in camelCase, with base64 payloads decoded to bytes."""
    try:
        message = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WireError(f"Invalid JSON payload received. {exc.msg}.") from None
    except UnicodeDecodeError:
        raise WireError("Invalid JSON payload received. Not UTF-8.") from None
    if not isinstance(message, dict):
        raise WireError("Invalid JSON payload received. Expected an object.")
    parsed = _check(message, CLIENT_MESSAGE, "", version)
    if len(parsed) != 1:
        raise WireError("Request contains an invalid argument: exactly one message per frame.")
    return parsed  # type: ignore[no-any-return]


def _check(value: Any, spec: Any, path: str, version: str) -> Any:
    if isinstance(spec, Alpha):
        if version != "v1alpha":
            field = path.rsplit(".", 1)[-1]
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            raise WireError(_unknown(field, parent))
        spec = spec.spec
    if spec is ANY:
        return value
    if spec is STRUCT:
        if not isinstance(value, dict):
            raise WireError(_bad_value(path, value, "an object"))
        return value
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise WireError(_bad_value(path, value, "an object"))
        result = {}
        for key, item in value.items():
            name = to_camel(key)
            if name not in spec:
                raise WireError(_unknown(to_snake(name), path))
            child = f"{path}.{to_snake(name)}" if path else to_snake(name)
            result[name] = _check(item, spec[name], child, version)
        return result
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise WireError(_bad_value(path, value, "a list"))
        return [_check(item, spec[0], f"{path}[{i}]", version) for i, item in enumerate(value)]
    if isinstance(spec, Enum):
        if isinstance(value, int) and not isinstance(value, bool) and value < len(spec.values):
            return spec.values[value]
        if value not in spec.values:
            raise WireError(_bad_value(path, value, "one of " + ", ".join(spec.values)))
        return value
    return _check_scalar(value, spec, path)


def _check_scalar(value: Any, spec: Any, path: str) -> Any:
    if spec is BYTES:
        if not isinstance(value, str):
            raise WireError(_bad_value(path, value, "base64 bytes"))
        try:
            return decode_base64(value)
        except (binascii.Error, ValueError):
            raise WireError(_bad_value(path, value[:20], "base64 bytes")) from None
    if spec is INT64:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            return int(value)
        spec = int
    if spec is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, spec) or (spec is not bool and isinstance(value, bool)):
        raise WireError(_bad_value(path, value, spec.__name__))
    return value


def _unknown(name: str, parent: str) -> str:
    where = f"'{parent}'"
    return f'Invalid JSON payload received. Unknown name "{name}" at {where}: Cannot find field.'


def _bad_value(path: str, value: Any, expected: str) -> str:
    shown = json.dumps(value)[:40] if not isinstance(value, bytes) else "bytes"
    return f"Invalid value at '{path}' ({expected}), {shown}"


def encode_for_wire(message: dict[str, Any]) -> bytes:
    """Server frames: UTF-8 JSON in a binary frame, bytes as standard base64 (as the service)."""
    return json.dumps(message, default=_wire_default, separators=(",", ":")).encode()


def encode_for_log(message: Any) -> Any:
    """The same message with every payload replaced by "<N bytes>"."""
    if isinstance(message, bytes):
        return f"<{len(message)} bytes>"
    if isinstance(message, dict):
        return {key: encode_for_log(value) for key, value in message.items()}
    if isinstance(message, list):
        return [encode_for_log(value) for value in message]
    return message


def _wire_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")


def close_reason(text: str) -> str:
    """WebSocket close reasons are limited to 123 bytes of UTF-8."""
    encoded = text.encode()[:123]
    return encoded.decode("utf-8", errors="ignore")
