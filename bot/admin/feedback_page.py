"""Feedback: the thumbs up and down people gave answers, newest first, with the question, the
answer and a link to the conversation; and the counts, all time and for the last 7 days."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from bot.admin.auth import AdminSession, require_admin
from bot.admin.conversations_page import plain_text
from bot.admin.layout import (
    badge,
    card,
    esc,
    filters,
    heading,
    html,
    join,
    link,
    pager,
    render,
    stats,
    table,
    when,
)
from bot.admin.params import choice, parse_page
from bot.admin.records import AdminRecords, FeedbackRow, page_window, since_days

if TYPE_CHECKING:
    from bot.app import Hub

Admin = Annotated[AdminSession, Depends(require_admin)]
PAGE_SIZE = 25
VALUES = {"all": None, "up": 1, "down": -1}


def _percent(up: int, down: int) -> str:
    """The helpful share of the votes, or a dash without votes."""
    total = up + down
    return f"{round(100 * up / total)} %" if total else "–"


def _clip(text: str, limit: int = 160) -> str:
    flat = " ".join(plain_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _row(row: FeedbackRow) -> list[object]:
    vote = badge("helpful", "ok") if row.value > 0 else badge("unhelpful", "bad")
    conversation = f"/admin/conversations/{row.conversation_id}"
    return [vote, html(f"{esc(_clip(row.question) or '–')}"),
            html(f'{esc(_clip(row.answer))}<span class="sub">'
                 f'{link(f"{conversation}#m{row.answer_id}", "Open the answer")}</span>'),
            html(f"{link(conversation, f'#{row.conversation_id}')}"
                 f'<span class="sub">{esc(row.platform)}</span>'),
            when(row.at)]


def router(hub: Hub) -> APIRouter:
    records = AdminRecords(hub.database)
    api = APIRouter()

    async def listing(request: Request) -> tuple[list[FeedbackRow], bool, int, str]:
        value = choice(request.query_params.get("value"), tuple(VALUES), "all")
        page_number = parse_page(request.query_params.get("page"))
        offset, limit = page_window(page_number, PAGE_SIZE)
        rows = await records.feedback(value=VALUES[value], offset=offset, limit=limit)
        return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE, page_number, value

    @api.get("/feedback")
    async def feedback(request: Request, admin: Admin) -> Response:
        rows, more, page_number, value = await listing(request)
        up, down = await records.feedback_counts()
        week_up, week_down = await records.feedback_counts(since_days(7))
        base = "/admin/feedback"
        body = join([
            heading("Feedback", subtitle="What people said about the answers they got."),
            stats([("Helpful", f"{up:,}", "all time"), ("Unhelpful", f"{down:,}", "all time"),
                   ("Last 7 days", f"{week_up:,} / {week_down:,}", "helpful / unhelpful"),
                   ("Satisfaction", _percent(up, down),
                    f"{_percent(week_up, week_down)} helpful this week")]),
            filters([("All", base, value == "all"),
                     ("Helpful", f"{base}?value=up", value == "up"),
                     ("Unhelpful", f"{base}?value=down", value == "down")]),
            card(join([table(["Vote", "Question", "Answer", "Conversation", "When"],
                             [_row(r) for r in rows], empty="No feedback yet."),
                       pager(base, {"value": "" if value == "all" else value},
                             page_number=page_number, has_next=more, shown=len(rows))]),
                 flush=True)])
        return render(request, "Feedback", body, session=admin, active="feedback")

    @api.get("/api/feedback")
    async def api_feedback(request: Request, _admin: Admin) -> JSONResponse:
        rows, more, page_number, _value = await listing(request)
        up, down = await records.feedback_counts()
        return JSONResponse({"helpful": up, "unhelpful": down, "page": page_number,
                             "more": more, "feedback": [
                                 {"value": r.value, "user_id": r.user_id,
                                  "at": r.at.isoformat(), "conversation_id": r.conversation_id,
                                  "answer_id": r.answer_id, "question": r.question,
                                  "answer": r.answer} for r in rows]})

    return api
