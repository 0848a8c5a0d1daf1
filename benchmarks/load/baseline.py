"""The baseline: the simplest correct Slack answer bot, to measure the hub against.

A bare slack-bolt `AsyncApp` (requests verified with the signing secret) whose `app_mention`
handler posts a placeholder in the thread, streams the openai SDK's answer to the mention's
text alone, edits the placeholder as tokens arrive (the first piece at once, then at most once
a second, Slack's write rate per channel) and makes a final edit with the whole answer. No
memory, no retrieval, no storage, no retries of its own: what a careful engineer would write in
an afternoon. Served by uvicorn through bolt's Starlette adapter, like the hub is served.

    SLACK_BOT_TOKEN=... SLACK_SIGNING_SECRET=... [SLACK_API_URL=...] OPENAI_API_KEY=... \
        python -m benchmarks.load.baseline --port 8000

`GET /healthz` answers 200 once the server is up (the harness waits for it).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import uvicorn
from openai import AsyncOpenAI
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PLACEHOLDER = "_Thinking…_"
UPDATE_INTERVAL = 1.0  # seconds between edits while the answer streams
MODEL = os.environ.get("BASELINE_MODEL", "gpt-4o-mini")


def build_app() -> Starlette:
    """The Starlette app: `POST /slack/events` through bolt, `GET /healthz`."""
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"],
                            base_url=os.environ.get("SLACK_API_URL", "https://slack.com/api/"))
    # The async app calls auth.test on its first request (to learn the bot's own ids).
    bolt = AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])
    model = AsyncOpenAI()  # OPENAI_API_KEY / OPENAI_BASE_URL from the environment

    @bolt.event("app_mention")
    async def answer(event: dict[str, Any], client: AsyncWebClient) -> None:
        channel, thread_ts = event["channel"], event.get("thread_ts") or event["ts"]
        placeholder = await client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                                    text=PLACEHOLDER)
        ts = placeholder["ts"]
        stream = await model.chat.completions.create(
            model=MODEL, stream=True, messages=[{"role": "user", "content": event["text"]}])
        text, shown, last = "", "", 0.0
        async for chunk in stream:
            if not chunk.choices or not chunk.choices[0].delta.content:
                continue
            text += chunk.choices[0].delta.content
            if time.monotonic() - last >= UPDATE_INTERVAL:
                last = time.monotonic()
                await client.chat_update(channel=channel, ts=ts, text=text)
                shown = text
        if text != shown or not text:
            await client.chat_update(channel=channel, ts=ts, text=text or "(no answer)")

    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
