"""What the fake Slack saw, turned into one outcome per question, and the figures from them.

Every question carries a marker (`q-<n>`) and the fake model's answer to it starts with
`ans-<n>` and ends with `done.`, so an answer is found by its text whatever the target did
with it (placeholder then edits, Slack's native streaming, one post). Times are the fake's own
arrival stamps (`SlackCall.at`, `time.monotonic()` in this process), so no polling delay is in
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.slack_server import FakeSlack

ANSWER_END = "done."
_QUESTION_MARK = re.compile(r"q-(\d+)")
_ANSWER_MARK = re.compile(r"ans-(\d+)")
# Web API methods that write a message; the text they carry, by argument name.
_WRITES = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream",
           "chat.stopStream")


def question_text(number: int) -> str:
    """A question that no cache has seen: the marker makes each one unique."""
    return f"How do I rotate my API key? q-{number}"


def answer_text(number: int, tokens: int) -> str:
    """The scripted answer to question `number`: `tokens` stream pieces (words)."""
    return " ".join([f"ans-{number}", *["tok"] * max(0, tokens - 2), ANSWER_END])


def responder(tokens: int) -> Any:
    """A FakeOpenAI responder answering the last user message's marked question."""

    def respond(body: dict[str, Any]) -> str:
        for message in reversed(body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                text = content if isinstance(content, str) else str(content)
                found = _QUESTION_MARK.findall(text)
                if found:
                    return answer_text(int(found[-1]), tokens)
                break
        return "unmarked question " + ANSWER_END

    return respond


@dataclass
class Question:
    number: int
    channel: str
    thread_ts: str
    sent: float  # time.monotonic() just before the POST
    status: int | None = None  # the target's HTTP answer to the event (None: no answer)
    event: dict[str, Any] = field(default_factory=dict)  # the Slack event that asks it


@dataclass
class Outcome:
    question: Question
    acknowledged: float | None = None  # first bot write in its thread (placeholder, stream)
    first: float | None = None  # first write carrying any of the answer's text
    last: float | None = None  # last write to the answer's message(s)
    answers: int = 0  # complete answers posted for it: 1 is right, 0 lost, >1 duplicated


def _call_text(call: Any) -> str:
    args = call.args
    parts = [str(args.get(k) or "") for k in ("text", "markdown_text")]
    chunks = args.get("chunks")
    if isinstance(chunks, list):
        parts.extend(str(c.get("text") or "") for c in chunks if isinstance(c, dict))
    return " ".join(parts)


def complete_answers(fake: FakeSlack, channels: list[str]) -> dict[int, list[tuple[str, str]]]:
    """Question number -> the (channel, ts) of every bot message now holding its whole answer."""
    found: dict[int, list[tuple[str, str]]] = {}
    for channel in channels:
        for message in fake.messages(channel):
            text = str(message.get("text") or "")
            if message.get("user") != fake.bot_user_id or ANSWER_END not in text:
                continue
            for number in {int(n) for n in _ANSWER_MARK.findall(text)}:
                found.setdefault(number, []).append((channel, str(message["ts"])))
    return found


def outcomes(fake: FakeSlack, questions: list[Question]) -> list[Outcome]:
    """One outcome per question, from the fake's messages and its record of write calls."""
    channels = sorted({q.channel for q in questions})
    answers = complete_answers(fake, channels)
    owner = {where: number for number, places in answers.items() for where in places}
    by_number = {q.number: Outcome(q, answers=len(answers.get(q.number, [])))
                 for q in questions}
    for method in _WRITES:
        for call in fake.calls_to(method):
            text = _call_text(call)
            number = None
            ts = call.args.get("ts")
            if ts is not None:
                number = owner.get((str(call.args.get("channel")), str(ts)))
            if number is None:
                marks = _ANSWER_MARK.findall(text)
                number = int(marks[-1]) if marks else None
            outcome = by_number.get(number) if number is not None else None
            if outcome is None:
                continue
            if outcome.last is None or call.at > outcome.last:
                outcome.last = call.at
            # Visible answer text: anything in the call but the placeholder's own words.
            carries_answer = bool(_ANSWER_MARK.search(text)) or (
                method in ("chat.appendStream", "chat.stopStream") and text.strip() != "")
            if carries_answer and (outcome.first is None or call.at < outcome.first):
                outcome.first = call.at
    _acknowledgements(fake, questions, by_number)
    return [by_number[q.number] for q in questions]


def _acknowledgements(fake: FakeSlack, questions: list[Question],
                      by_number: dict[int, Outcome]) -> None:
    """Set each outcome's `acknowledged`: the first message the bot opened in the question's
    thread once it was asked (a placeholder, a native stream, or the answer itself). Where two
    questions of one thread are in flight at once this may pick the other's; the run spreads
    questions over enough threads for that to be rare."""
    opened: dict[tuple[str, str], list[float]] = {}
    for method in ("chat.postMessage", "chat.startStream"):
        for call in fake.calls_to(method):
            where = (str(call.args.get("channel")), str(call.args.get("thread_ts")))
            opened.setdefault(where, []).append(call.at)
    for question in questions:
        times = [t for t in opened.get((question.channel, question.thread_ts), [])
                 if t >= question.sent]
        if times:
            by_number[question.number].acknowledged = min(times)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def distribution(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p95, p99 and max, in milliseconds (values are seconds)."""
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {"n": len(values), "p50": ms(percentile(values, 50)),
            "p95": ms(percentile(values, 95)), "p99": ms(percentile(values, 99)),
            "max": ms(max(values) if values else None)}
