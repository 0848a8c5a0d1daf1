"""`GET /` (the chat page) and `POST /api/chat` (answers as server-sent events).

Each browser tab keeps its own conversation id; the first response of a new conversation
carries the id that the page then sends back with every question. A new conversation's id is
derived from the first message's `message_id` when the client sends one, so that a retried
first message (the page's "Try again" after a lost response) lands in the same conversation
and is recognised as a duplicate instead of being answered twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from adapters.http import NotJson, parse_json, read_capped
from adapters.web.channel import SseReplyChannel
from bot.engine import Engine, Outcome, Result
from bot.metrics import event_in
from bot.model import Author, ConversationKey, Message
from bot.store.repository import StorageUnavailable

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 512 * 1024
FAILED = {Outcome.MODEL_FAILED, Outcome.STORAGE_FAILED}

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: str = Field(max_length=MAX_BODY_BYTES)
    conversation_id: Identifier | None = None
    message_id: Identifier | None = None  # lets a page retry a POST without a second answer


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def new_conversation_id(message_id: str | None, text: str) -> str:
    """The id of a conversation a message starts: derived from the client's `message_id` and
    the question when it has one (the page's ids are 128 random bits), so that retrying the
    first message opens the same conversation and the engine sees a duplicate, while a client
    that reuses ids for different questions still gets a new conversation; random otherwise."""
    if message_id is None:
        return uuid.uuid4().hex
    seed = json.dumps(["bothub web conversation", message_id, text])
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def web_chat_router(engine: Engine) -> APIRouter:
    router = APIRouter()
    running: set[asyncio.Task[Any]] = set()  # strong references: answers outlive their request

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers=SECURITY_HEADERS)

    @router.get("/static/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        try:
            path = (STATIC / name).resolve()
            found = path.parent == STATIC.resolve() and path.is_file()
        except (OSError, ValueError):  # a NUL byte, a name longer than the filesystem allows
            found = False
        if not found:
            return _problem(404, "not found")
        return FileResponse(path, headers=SECURITY_HEADERS)

    @router.post("/api/chat")
    async def chat(request: Request) -> Response:
        event_in("web", "message")
        body = await read_capped(request, MAX_BODY_BYTES)
        if body is None:
            return _problem(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        try:
            parsed = ChatRequest.model_validate(parse_json(body))
        except NotJson:
            return _problem(400, 'the body must be JSON: {"message": "...", '
                                 '"conversation_id": "..."}')
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            return _problem(422, f"{field}: {first['msg']}")

        conversation_id = parsed.conversation_id or \
            new_conversation_id(parsed.message_id, parsed.message)
        key = ConversationKey("web", "web", "chat", conversation_id)
        if parsed.conversation_id is not None:
            # Ids are minted here (random, or a hash of the client's random first message_id)
            # and unguessable; one the server never issued could be shared by two browsers,
            # and with it their history.
            try:
                known = await engine.conversation_exists(key)
            except StorageUnavailable:
                return _problem(503, "storage is unavailable; please try again shortly")
            if not known:
                return _problem(404, "unknown conversation_id: start a new conversation "
                                     "without one")
        message = Message(
            key=key,
            id=parsed.message_id or uuid.uuid4().hex,
            author=Author(id=f"web:{conversation_id}", display_name=""),
            text=parsed.message, direct=True, channel_name="the web chat")
        channel = SseReplyChannel()
        channel.emit("conversation", {"conversation_id": conversation_id})

        async def answer() -> None:
            try:
                result: Result = await engine.handle(message, channel)
                if result.outcome in FAILED and result.reply is not None:
                    channel.emit("error", {"message": result.reply.text,
                                           "outcome": result.outcome.value})
                channel.emit("done", {"outcome": result.outcome.value})
            finally:
                channel.close()

        task = asyncio.create_task(answer())
        running.add(task)
        task.add_done_callback(running.discard)
        return StreamingResponse(channel.events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return router
