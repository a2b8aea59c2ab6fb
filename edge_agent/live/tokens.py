"""Ephemeral tokens: minted from a real key on a trusted machine, used by the kiosk."""

from __future__ import annotations

import datetime as dt
import ssl

from google import genai
from google.genai import errors, types

from edge_agent.config import Config
from edge_agent.credentials import HOW_TO_SET, find_api_key
from edge_agent.errors import UserError
from edge_agent.live.setup import build_live_config


def mint_token(config: Config, uses: int, expire_minutes: float) -> str:
    key = find_api_key()
    if key is None:
        raise UserError(f"no API key to mint a token from: {HOW_TO_SET.split(';')[0]}")
    live = config.live
    client_args = (
        {"verify": ssl.create_default_context(cafile=live.ca_file)} if live.ca_file else {}
    )
    client = genai.Client(
        api_key=key.value,
        http_options=types.HttpOptions(
            base_url=live.endpoint or None, api_version="v1alpha", client_args=client_args
        ),
    )
    now = dt.datetime.now(dt.UTC)
    try:
        token = client.auth_tokens.create(
            config=types.CreateAuthTokenConfig(
                uses=uses,
                expire_time=now + dt.timedelta(minutes=expire_minutes),
                new_session_expire_time=now + dt.timedelta(minutes=min(expire_minutes, 60)),
                live_connect_constraints=types.LiveConnectConstraints(
                    model=live.model, config=build_live_config(config)
                ),
            )
        )
    except errors.ClientError as exc:
        raise UserError(f"the service refused to mint a token: {exc.message or exc}") from None
    if not token.name:
        raise UserError("the service returned no token")
    return str(token.name)
