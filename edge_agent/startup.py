"""Before READY: where the key comes from, and one cheap check that the service takes it.

Shared by `run`, `simulate` and `check --online`. Imports no SDK: the check is one HTTPS GET.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil

from edge_agent.config import Config
from edge_agent.credentials import (
    HOW_TO_SET,
    Credential,
    KeyProvider,
    find_api_key,
    run_token_command,
)
from edge_agent.errors import UserError
from edge_agent.live.models import effective_api_version
from edge_agent.live.probe import PROBE_TIMEOUT_S, ProbeResult, probe_service
from edge_agent.tools.registry import Tool

log = logging.getLogger(__name__)

EMULATOR_KEY = Credential("emulator", "built-in emulator")


def key_provider(config: Config, fallback: Credential | None = None) -> KeyProvider:
    """Checked before any device opens. The provider reads the key again at every connect, so
    a key replaced in the environment or the credential directory is picked up."""
    if config.live.token_command:
        command = config.live.token_command
        _check_runnable(command)
        return lambda: run_token_command(command)
    key = find_api_key() or fallback
    if key is None:
        raise UserError(f"no Gemini API key: {HOW_TO_SET}")
    log.info("api key from %s", key.source)

    def current() -> Credential:
        found = find_api_key() or fallback
        if found is None:
            raise UserError(f"the API key is gone: {HOW_TO_SET}")
        return found

    return current


def _check_runnable(command: str) -> None:
    try:
        program = shlex.split(command)[0]
    except (ValueError, IndexError):
        raise UserError(f"[live] token_command: cannot parse {command!r}") from None
    found = shutil.which(program) if os.sep not in program else program
    if found is None or not os.access(found, os.X_OK):
        raise UserError(f"[live] token_command: {program!r} is not an executable program")


async def ask_service(config: Config, key: str) -> ProbeResult:
    """One GET of the configured model, off the loop, bounded in all."""
    live = config.live
    version = effective_api_version(config)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S + 0.5):
            return await asyncio.to_thread(
                probe_service, live.endpoint, version, key, live.model, live.ca_file
            )
    except TimeoutError:
        return ProbeResult("unreachable", f"no answer within {PROBE_TIMEOUT_S:g} s")


async def try_setup(config: Config, keys: KeyProvider, available: dict[str, Tool]) -> ProbeResult:
    """`check --online`: one Live session opened with the setup the agent's session would send
    (the model, its options, the enabled tools of `available`; MCP tools are not asked) and
    closed at once. Refused -> UserError with the service's reason and the [live] key it
    names; no answer -> unreachable."""
    from edge_agent.live.models import config_hint, traits
    from edge_agent.live.sdk import loaded_wire

    model = traits(config.live.model)
    non_blocking = model is None or model.non_blocking_tools
    declarations = [
        available[name].declaration(non_blocking)
        for name in config.tools.wanted(config.timers.enabled)
        if name in available
    ]
    wire = await asyncio.to_thread(loaded_wire)  # google-genai: imported off the loop
    credential = await asyncio.to_thread(keys)
    try:
        refusal = await wire.try_setup(config, credential, declarations)
    except (TimeoutError, *wire.NETWORK_ERRORS) as exc:
        return ProbeResult("unreachable", str(exc) or type(exc).__name__)
    if refusal is not None:
        raise UserError(f"the service refused the setup: {refusal}{config_hint(refusal)}")
    return ProbeResult("ok")


async def check_service(config: Config, keys: KeyProvider) -> ProbeResult:
    """The key and the model, asked once without a Live session (skipped for tokens, which
    only work on the Live API). Refused -> UserError; unreachable -> a warning."""
    if config.live.token_command:
        return ProbeResult("ok", "skipped: ephemeral tokens")
    key = keys()
    live = config.live
    result = await ask_service(config, key.value)
    if result.verdict == "key_rejected":
        raise UserError(f"the service refused the API key from {key.source}: {result.detail}")
    if result.verdict == "model_rejected":
        raise UserError(f"[live] model {live.model!r} refused by the service: {result.detail}")
    if result.verdict == "unreachable":
        log.warning("the service is not reachable (%s); starting offline", result.detail)
    return result
