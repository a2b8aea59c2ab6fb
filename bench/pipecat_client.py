"""pipecat's Gemini Live service with its local PyAudio transport, pointed at the emulator.

Runs in its own environment (pipecat pins its own google-genai): the harness starts it with
$PIPECAT_PYTHON, made by `python -m venv VENV && VENV/bin/pip install 'pipecat-ai[google,local]'`.
Turn detection is the service's (no local VAD), as in pipecat's Gemini Live examples.

Run by the harness: $PIPECAT_PYTHON bench/pipecat_client.py ENDPOINT CA_FILE
"""

from __future__ import annotations

import asyncio
import ssl
import sys

from google.genai.types import HttpOptions
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService
from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams


async def main() -> None:
    endpoint, ca_file = sys.argv[1:3]
    transport = LocalAudioTransport(
        LocalAudioTransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=16000,
            audio_out_sample_rate=24000,
        )
    )
    llm = GeminiLiveLLMService(
        api_key="bench",
        settings=GeminiLiveLLMService.Settings(model="gemini-3.8-live"),
        http_options=HttpOptions(
            base_url=endpoint,
            api_version="v1beta",
            async_client_args={"ssl": ssl.create_default_context(cafile=ca_file)},
        ),
    )
    context = LLMContextAggregatorPair(LLMContext())  # the service waits for a context
    pipeline = Pipeline(
        [transport.input(), context.user(), llm, transport.output(), context.assistant()]
    )
    task = PipelineTask(pipeline)
    await task.queue_frames([LLMRunFrame()])
    print("READY", flush=True)
    await PipelineRunner(handle_sigint=False).run(task)


if __name__ == "__main__":
    asyncio.run(main())
