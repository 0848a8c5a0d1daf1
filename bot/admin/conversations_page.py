"""Conversations: the list (newest activity first, searchable) and one conversation's
transcript with each answer's mode, model, tokens, cost and the feedback it got.

Each answer lists the sources it cited, as stored with it; answers stored before their sources
were kept (migration 0009) show the links written into the answer itself instead.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from bot.admin.auth import AdminSession, require_admin
from bot.admin.layout import (
    Html,
    age,
    badge,
    card,
    error_page,
    esc,
    filters,
    heading,
    html,
    join,
    link,
    pager,
    render,
    table,
    when,
)
from bot.admin.params import parse_id, parse_page
from bot.admin.records import AdminRecords, ConversationRow, Transcript, Turn, page_window

if TYPE_CHECKING:
    from bot.app import Hub

Admin = Annotated[AdminSession, Depends(require_admin)]
PAGE_SIZE = 25
_LINK = re.compile(r"\[([^\]\n]{1,200})\]\((https?://[^\s)]{1,500})\)|(https?://[^\s)>\]]{1,500})")
_INLINE = re.compile(r"\*\*([^*\n]+)\*\*|`([^`\n]+)`|\[([^\]\n]{1,200})\]\((https?://[^\s)]{1,500})\)"
                     r"|(?<![\w*])\*([^*\n]+)\*(?![\w*])")
MODES = {"model": "model answer", "retrieval_only": "from the docs only", "notice": "notice"}


def money(value: Decimal) -> str:
    """Dollars with enough places to show what one answer costs."""
    if value == 0:
        return "$0"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def where(key: object) -> str:
    """A conversation key as people read it: platform · channel."""
    platform = getattr(key, "platform", "")
    channel = getattr(key, "channel", "")
    return f"{platform} · {channel}" if channel else str(platform)


def sources_of(text: str) -> list[tuple[str, str]]:
    """The links written into an answer, in order, each once: (title, url)."""
    seen: dict[str, str] = {}
    for match in _LINK.finditer(text):
        title, url, bare = match.groups()
        address = (url or bare or "").rstrip(".,;:")
        if address and address not in seen:
            seen[address] = title or address
    return [(title, url) for url, title in seen.items()][:10]


def answer_sources(turn: Turn) -> list[tuple[str, str]]:
    """The citations stored with an answer, else the links in its text."""
    return list(turn.sources) or sources_of(turn.text)


def source_item(title: str, url: str) -> str:
    """A source as a list item: a link for web addresses only, plain text otherwise (a file
    path, or anything a document could smuggle in as a URL)."""
    if url.startswith(("https://", "http://")):
        return f"<li>{link(url, title)}</li>"
    detail = f' <span class="muted">{esc(url)}</span>' if url and url != title else ""
    return f"<li>{esc(title)}{detail}</li>"


def rich_text(text: str) -> Html:
    """An answer's light markdown (bold, italics, code, http links) as markup; everything else
    stays text. Each piece is escaped on its own, so nothing in `text` becomes a tag."""
    out: list[object] = []
    position = 0
    for match in _INLINE.finditer(text):
        out.append(text[position:match.start()])
        bold, code, title, url, italic = match.groups()
        if bold is not None:
            out.append(html(f"<strong>{esc(bold)}</strong>"))
        elif code is not None:
            out.append(html(f"<code>{esc(code)}</code>"))
        elif title is not None:
            out.append(link(url, title))
        else:
            out.append(html(f"<em>{esc(italic)}</em>"))
        position = match.end()
    out.append(text[position:])
    return join(out)


def plain_text(text: str) -> str:
    """`text` without its markdown marks, for one-line previews."""
    def unmark(match: re.Match[str]) -> str:
        bold, code, title, _url, italic = match.groups()
        return bold or code or title or italic or ""

    return _INLINE.sub(unmark, text)


def _turn(turn: Turn) -> Html:
    if turn.role == "user":
        who = turn.author_name or turn.author_id or "user"
        extra = f" · {turn.attachments} attachment(s)" if turn.attachments else ""
        return html(f'<article class="turn user" id="m{turn.id}"><header><strong>'
                    f"{esc(who)}</strong>{when(turn.at)}{esc(extra)}</header>"
                    f'<div class="text">{esc(turn.text)}</div></article>')
    facts = [MODES.get(turn.mode, turn.mode or "answer")]
    if turn.model:
        facts.append(turn.model)
    if turn.tokens_in or turn.tokens_out:
        facts.append(f"{turn.tokens_in:,} in / {turn.tokens_out:,} out tokens")
    if turn.cost_usd:
        facts.append(money(turn.cost_usd))
    if turn.latency_ms is not None:
        facts.append(f"{turn.latency_ms / 1000:.1f} s")
    status = html("") if turn.status == "ok" else badge(turn.status)
    votes = []
    if turn.up:
        votes.append(badge(f"{turn.up} helpful", "ok"))
    if turn.down:
        votes.append(badge(f"{turn.down} unhelpful", "bad"))
    sources = answer_sources(turn)
    cited = (html("<footer><strong>Sources</strong><ol>"
                  + "".join(source_item(title, url) for title, url in sources)
                  + "</ol></footer>") if sources else html(""))
    error = (html(f'<footer class="muted">Error: {esc(turn.error)}</footer>') if turn.error
             else html(""))
    return html(f'<article class="turn bot" id="m{turn.id}"><header><strong>bothub</strong>'
                f"{when(turn.at)}<span>{esc(' · '.join(facts))}</span>{status}"
                f"{join(votes)}</header>"
                f'<div class="text">{rich_text(turn.text or "(no text)")}</div>'
                f"{cited}{error}</article>")


def transcript_html(transcript: Transcript) -> Html:
    """The turns of a conversation, oldest first (also shown under an escalation)."""
    if not transcript.turns:
        return html('<p class="muted">No messages stored.</p>')
    return html(f'<div class="turns">{join(_turn(t) for t in transcript.turns)}</div>')


def _row(row: ConversationRow) -> list[object]:
    escalation = badge(row.escalation_state) if row.escalation_state else html(
        '<span class="muted">–</span>')
    return [link(f"/admin/conversations/{row.id}", f"#{row.id}"),
            html(f"{esc(row.key.platform)}<span class=\"sub\">{esc(row.key.workspace)}</span>"),
            html(f'<span class="clip">{esc(row.key.channel)}</span>'),
            row.user_name or "–", str(row.messages), money(row.cost_usd), escalation,
            html(f"{when(row.last_activity)}<span class=\"sub\">"
                 f"{esc(age(row.last_activity))} ago</span>")]


def _json_row(row: ConversationRow) -> dict[str, object]:
    return {"id": row.id, "platform": row.key.platform, "workspace": row.key.workspace,
            "channel": row.key.channel, "thread": row.key.thread, "user": row.user_name,
            "messages": row.messages, "answers": row.answers, "cost_usd": str(row.cost_usd),
            "escalation": row.escalation_state,
            "last_activity": row.last_activity.isoformat() if row.last_activity else None}


def router(hub: Hub) -> APIRouter:
    records = AdminRecords(hub.database)
    api = APIRouter()

    async def listing(request: Request) -> tuple[list[ConversationRow], bool, int, str, bool]:
        q = request.query_params.get("q", "")[:200]
        escalated = request.query_params.get("escalated") == "1"
        page_number = parse_page(request.query_params.get("page"))
        offset, limit = page_window(page_number, PAGE_SIZE)
        rows = await records.conversations(search=q, escalated=escalated, offset=offset,
                                           limit=limit)
        return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE, page_number, q, escalated

    @api.get("/conversations")
    async def conversations(request: Request, admin: Admin) -> Response:
        rows, more, page_number, q, escalated = await listing(request)
        base = "/admin/conversations"
        body = join([
            heading("Conversations", subtitle="Every thread bothub took part in, newest "
                                              "activity first."),
            filters([("All", base, not escalated), ("Escalated", f"{base}?escalated=1",
                                                    escalated)],
                    search=(base, "q", q)),
            card(join([
                table(["#", "Platform", "Channel", "User", "Messages", "Cost", "Escalation",
                       "Last activity"], [_row(r) for r in rows], numeric=(4, 5),
                      empty=(f"No conversation mentions “{q}”." if q else
                             "No conversations yet.")),
                pager(base, {"q": q, "escalated": "1" if escalated else ""},
                      page_number=page_number, has_next=more, shown=len(rows))]),
                 flush=True)])
        return render(request, "Conversations", body, session=admin, active="conversations")

    @api.get("/conversations/{conversation_id}")
    async def conversation(request: Request, conversation_id: str, admin: Admin) -> Response:
        number = parse_id(conversation_id)
        transcript = await records.transcript(number) if number is not None else None
        if transcript is None:
            return error_page(request, admin, 404, "Conversation not found",
                              f"There is no conversation #{conversation_id[:40]}.",
                              active="conversations")
        key = transcript.key
        escalations = [html(f"{link(f'/admin/escalations/{i}', f'#{i}')} {badge(state)} "
                            f"<span class=\"muted\">{esc(reason)}</span>")
                       for i, state, reason, _at in transcript.escalations]
        facts = html(
            '<dl class="facts">'
            f"<dt>Platform</dt><dd>{esc(key.platform)}</dd>"
            f"<dt>Workspace</dt><dd>{esc(key.workspace)}</dd>"
            f"<dt>Channel</dt><dd>{esc(key.channel)}</dd>"
            f"<dt>Thread</dt><dd class=\"mono\">{esc(key.thread)}</dd>"
            f"<dt>Started</dt><dd>{when(transcript.created_at)}</dd>"
            f"<dt>Messages</dt><dd>{len(transcript.turns)}</dd>"
            f"<dt>Tokens</dt><dd>{transcript.tokens:,}</dd>"
            f"<dt>Cost</dt><dd>{esc(money(transcript.cost_usd))}</dd>"
            f"<dt>Escalations</dt><dd>{join(escalations, ', ') if escalations else '–'}</dd>"
            "</dl>")
        side = join([card(facts, title="Details")]
                    + ([card(html(f'<div class="text">{esc(transcript.summary)}</div>'),
                             title="Running summary")] if transcript.summary else []))
        body = join([
            heading(f"Conversation #{transcript.id}", subtitle=where(key)),
            html('<div class="grid-side"><div>'),
            card(transcript_html(transcript), title="Transcript"),
            html(f"</div><div>{side}</div></div>")])
        return render(request, f"Conversation #{transcript.id}", body, session=admin,
                      active="conversations")

    @api.get("/api/conversations")
    async def api_conversations(request: Request, _admin: Admin) -> JSONResponse:
        rows, more, page_number, _q, _e = await listing(request)
        return JSONResponse({"page": page_number, "more": more,
                             "conversations": [_json_row(r) for r in rows]})

    @api.get("/api/conversations/{conversation_id}")
    async def api_conversation(conversation_id: str, _admin: Admin) -> JSONResponse:
        number = parse_id(conversation_id)
        transcript = await records.transcript(number) if number is not None else None
        if transcript is None:
            return JSONResponse({"error": f"no conversation {conversation_id[:40]!r}"}, 404)
        return JSONResponse({
            "id": transcript.id, "platform": transcript.key.platform,
            "workspace": transcript.key.workspace, "channel": transcript.key.channel,
            "thread": transcript.key.thread, "cost_usd": str(transcript.cost_usd),
            "escalations": [{"id": i, "state": s, "reason": r}
                            for i, s, r, _ in transcript.escalations],
            "messages": [{"id": t.id, "role": t.role, "author": t.author_name or t.author_id,
                          "text": t.text, "at": t.at.isoformat(), "mode": t.mode,
                          "status": t.status, "model": t.model, "tokens_in": t.tokens_in,
                          "tokens_out": t.tokens_out, "cost_usd": str(t.cost_usd),
                          "helpful": t.up, "unhelpful": t.down,
                          "sources": [{"title": ti, "url": u} for ti, u in answer_sources(t)]}
                         for t in transcript.turns]})

    return api
