"""The usual way: a client in the style of Google's Live API starter script.

PyAudio blocking reads of 1024 samples in a thread, an asyncio queue to the sender, server VAD,
received audio in a queue played by blocking writes in a thread, the queue drained when the
service says `interrupted`. Optional camera: OpenCV, 1 frame per second, JPEG.

Run by the harness: python -m bench.baseline ENDPOINT CA_FILE [--camera VIDEO]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import time

import pyaudio
from google import genai
from google.genai import types

CHUNK = 1024
SEND_RATE, RECEIVE_RATE = 16000, 24000


class AudioLoop:
    def __init__(self, session: object, camera: str | None) -> None:
        self.session = session
        self.camera = camera
        self.out_queue: asyncio.Queue[types.Blob] = asyncio.Queue(maxsize=5)
        self.audio_in: asyncio.Queue[bytes] = asyncio.Queue()
        self.pa = pyaudio.PyAudio()

    async def listen_audio(self) -> None:
        stream = self.pa.open(
            format=pyaudio.paInt16, channels=1, rate=SEND_RATE, input=True, frames_per_buffer=CHUNK
        )
        print("READY", flush=True)
        while True:
            data = await asyncio.to_thread(stream.read, CHUNK, exception_on_overflow=False)
            await self.out_queue.put(types.Blob(data=data, mime_type="audio/pcm;rate=16000"))

    async def send_realtime(self) -> None:
        while True:
            blob = await self.out_queue.get()
            if blob.mime_type == "image/jpeg":
                await self.session.send_realtime_input(video=blob)  # type: ignore[attr-defined]
            else:
                await self.session.send_realtime_input(audio=blob)  # type: ignore[attr-defined]

    async def get_frames(self) -> None:
        import cv2

        assert self.camera is not None
        capture = cv2.VideoCapture(self.camera)
        while True:
            ok, frame = await asyncio.to_thread(capture.read)
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            height, width = frame.shape[:2]
            scale = min(1024 / width, 1024 / height, 1.0)
            frame = cv2.resize(frame, (int(width * scale), int(height * scale)))
            ok, jpeg = cv2.imencode(".jpg", frame)
            await self.out_queue.put(types.Blob(data=jpeg.tobytes(), mime_type="image/jpeg"))
            await asyncio.sleep(1.0)

    async def receive_audio(self) -> None:
        while True:
            async for response in self.session.receive():  # type: ignore[attr-defined]
                if response.data:
                    self.audio_in.put_nowait(response.data)
                content = response.server_content
                if content is not None and content.interrupted:
                    while not self.audio_in.empty():  # stop playback: drain the queue
                        self.audio_in.get_nowait()

    async def play_audio(self) -> None:
        stream = self.pa.open(format=pyaudio.paInt16, channels=1, rate=RECEIVE_RATE, output=True)
        while True:
            data = await self.audio_in.get()
            await asyncio.to_thread(stream.write, data)

    async def run(self) -> None:
        tasks = [self.listen_audio(), self.send_realtime(), self.receive_audio(), self.play_audio()]
        if self.camera:
            tasks.append(self.get_frames())
        await asyncio.gather(*tasks)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("ca_file")
    parser.add_argument("--camera")
    args = parser.parse_args()
    client = genai.Client(
        api_key="bench",
        http_options=types.HttpOptions(
            base_url=args.endpoint,
            api_version="v1beta",
            async_client_args={"ssl": ssl.create_default_context(cafile=args.ca_file)},
        ),
    )
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
        await AudioLoop(session, args.camera).run()


if __name__ == "__main__":
    started = time.monotonic()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
