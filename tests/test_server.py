"""The HTTP app on a real socket: web chat over SSE, hostile input, health and metrics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def chat(server: LiveServer, payload: Any, **kwargs: Any) -> httpx.Response:
    content = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return httpx.post(f"{server.url}/api/chat", content=content,
                      headers={"content-type": "application/json"}, timeout=30, **kwargs)


def test_chat_streams_conversation_id_pieces_and_sources(live_server: LiveServer,
                                                         fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Open **Settings** and pick a plan.", chunk_delay=0.02))
    arrivals = []
    with httpx.stream("POST", f"{live_server.url}/api/chat", json={"message": "Change plan?"},
                      timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = ""
        for piece in response.iter_text():
            buffer += piece
            arrivals.append(buffer.count("event: delta"))
    events = parse_sse(buffer)
    names = [name for name, _ in events]
    assert names[0] == "conversation" and names[-3:] == ["message", "sources", "done"]
    assert len(uuid.UUID(events[0][1]["conversation_id"]).hex) == 32
    deltas = "".join(data["text"] for name, data in events if name == "delta")
    assert deltas == "Open **Settings** and pick a plan."
    assert events[-3][1] == {"text": deltas, "mode": "model"}
    assert events[-2][1] == {"sources": []}
    assert events[-1][1] == {"outcome": "answered"}
    # The pieces reached the client as they were produced, not in one lump at the end.
    assert len({count for count in arrivals if count}) > 2


def test_conversation_id_continues_the_conversation(live_server: LiveServer,
                                                    fake_openai: FakeOpenAI) -> None:
    first = parse_sse(chat(live_server, {"message": "My name is Grace."}).text)
    conversation_id = first[0][1]["conversation_id"]
    second = parse_sse(chat(live_server, {"message": "What is my name?",
                                          "conversation_id": conversation_id}).text)
    assert second[0][1]["conversation_id"] == conversation_id
    contents = [m["content"] for m in fake_openai.chat_requests()[-1]["messages"]]
    assert "My name is Grace." in contents


def test_a_retried_post_is_answered_once(live_server: LiveServer,
                                         fake_openai: FakeOpenAI) -> None:
    opening = parse_sse(chat(live_server, {"message": "Hi"}).text)
    payload = {"message": "Hello", "conversation_id": opening[0][1]["conversation_id"],
               "message_id": "m" * 16}
    first = parse_sse(chat(live_server, payload).text)
    again = parse_sse(chat(live_server, payload).text)
    assert first[-1][1] == {"outcome": "answered"}
    assert [name for name, _ in again] == ["conversation", "done"]
    assert again[-1][1] == {"outcome": "duplicate"}
    assert len(fake_openai.chat_requests()) == 2


@pytest.mark.parametrize(("body", "status", "expected"), [
    (b"{not json", 400, "must be JSON"),
    (b"\xff\xfe\x00\x01", 400, "must be JSON"),
    (b"[" * 100_000, 400, "must be JSON"),  # deeper than Python's json can recurse
    (b'{"message": ' + b"9" * 5_000 + b"}", 400, "must be JSON"),  # past the int digit limit
    (b"[]", 422, "body"),
    (b'{"conversation_id": "abcdefgh12"}', 422, "message"),
    (b'{"message": "hi", "conversation_id": null, "message_id": "<script>"}', 422,
     "message_id"),
    (b'{"message": 42}', 422, "message"),
    (b'{"message": "hi", "conversation_id": "../../etc/passwd"}', 422, "conversation_id"),
    (b'{"message": "hi", "conversation_id": "' + b"x" * 500 + b'"}', 422, "conversation_id"),
    (b'{"message": "' + b"a" * 600_000 + b'"}', 413, "larger than"),
])
def test_malformed_requests_get_a_clear_http_error(live_server: LiveServer,
                                                   fake_openai: FakeOpenAI, body: bytes,
                                                   status: int, expected: str) -> None:
    response = chat(live_server, body)
    assert response.status_code == status
    assert expected in response.json()["error"]
    assert "Traceback" not in response.text
    assert fake_openai.chat_requests() == []


@pytest.mark.parametrize(("message", "expected"), [
    ("", "empty"),
    ("   ", "empty"),
    ("x" * 100_000, "100,000 characters"),
])
def test_unusable_messages_get_a_polite_notice(live_server: LiveServer,
                                               fake_openai: FakeOpenAI, message: str,
                                               expected: str) -> None:
    events = parse_sse(chat(live_server, {"message": message}).text)
    [notice] = [data for name, data in events if name == "message"]
    assert expected in notice["text"] and notice["mode"] == "notice"
    assert events[-1][1] == {"outcome": "refused"}


def test_model_failure_is_an_error_event_and_the_message_is_kept(
        live_server: LiveServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(3, status=503)
    events = parse_sse(chat(live_server, {"message": "Is it down?"}).text)
    names = [name for name, _ in events]
    assert names == ["conversation", "message", "sources", "error", "done"]
    error = events[3][1]
    assert error["outcome"] == "model_failed" and "try again" in error["message"]
    assert "503" not in error["message"] and "Traceback" not in json.dumps(events)


async def test_healthz_reports_each_component(live_server: LiveServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{live_server.url}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["database"]["state"] == "ok"
    assert body["components"]["model"] == {"state": "configured", "model": "gpt-4o"}


def test_metrics_count_messages_tokens_and_latency(live_server: LiveServer,
                                                   fake_openai: FakeOpenAI) -> None:
    def sample(text: str, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(text):
            for point in family.samples:
                if point.name == name and point.labels == labels:
                    return float(point.value)
        return 0.0

    before = httpx.get(f"{live_server.url}/metrics").text
    chat(live_server, {"message": "Count me"})
    after = httpx.get(f"{live_server.url}/metrics").text
    assert sample(after, "bothub_messages_total", platform="web", outcome="answered") == (
        sample(before, "bothub_messages_total", platform="web", outcome="answered") + 1)
    assert sample(after, "bothub_llm_tokens_total", model="gpt-4o", direction="out") > (
        sample(before, "bothub_llm_tokens_total", model="gpt-4o", direction="out"))
    assert sample(after, "bothub_llm_latency_seconds_count", model="gpt-4o", kind="chat") == (
        sample(before, "bothub_llm_latency_seconds_count", model="gpt-4o", kind="chat") + 1)
    assert "bothub_llm_cost_usd_total" in after


def test_web_page_and_assets_are_served_locally(live_server: LiveServer) -> None:
    page = httpx.get(f"{live_server.url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "https://" not in page.text.split("<body", 1)[0]  # nothing loads from a CDN
    for asset in ("chat.css", "chat.js"):
        assert httpx.get(f"{live_server.url}/static/{asset}").status_code == 200
    assert httpx.get(f"{live_server.url}/static/..%2Froutes.py").status_code == 404
    assert httpx.get(f"{live_server.url}/static/nope.js").status_code == 404
    for name in ("chat.css%00.js", "a" * 300):  # NUL byte, longer than a file name may be
        assert httpx.get(f"{live_server.url}/static/{name}").status_code == 404


def test_a_retried_first_message_opens_the_same_conversation_and_is_answered_once(
        live_server: LiveServer, fake_openai: FakeOpenAI) -> None:
    payload = {"message": "Hello", "message_id": uuid.uuid4().hex}  # no conversation_id yet
    first = parse_sse(chat(live_server, payload).text)
    again = parse_sse(chat(live_server, payload).text)
    assert first[-1][1] == {"outcome": "answered"}
    assert again == [first[0], ("done", {"outcome": "duplicate"})]
    assert len(fake_openai.chat_requests()) == 1
    other = parse_sse(chat(live_server, {**payload, "message_id": uuid.uuid4().hex}).text)
    assert other[0][1]["conversation_id"] != first[0][1]["conversation_id"]
    # A client that reuses a message id for another question starts another conversation.
    reused = parse_sse(chat(live_server, {**payload, "message": "Something else"}).text)
    assert reused[0][1]["conversation_id"] != first[0][1]["conversation_id"]
    assert reused[-1][1] == {"outcome": "answered"}


def test_only_conversation_ids_the_server_issued_are_accepted(
        live_server: LiveServer, fake_openai: FakeOpenAI) -> None:
    response = chat(live_server, {"message": "hi", "conversation_id": "aaaaaaaa"})
    assert response.status_code == 404
    assert "unknown conversation_id" in response.json()["error"]
    assert fake_openai.chat_requests() == []


def test_page_is_served_with_security_headers(live_server: LiveServer) -> None:
    page = httpx.get(f"{live_server.url}/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_a_huge_chunked_body_is_refused(live_server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"message": "'
        for _ in range(64):
            yield b"a" * 65536

    response = httpx.post(f"{live_server.url}/api/chat", content=chunks(), timeout=30)
    assert response.status_code == 413
