"""The web chat: a page served by bothub and an SSE endpoint that streams answers to it."""

from adapters.web.routes import web_chat_router

__all__ = ["web_chat_router"]
