"""The escalation queue: open and claimed escalations (or resolved ones), one escalation with
its events and transcript, and the Claim / Release / Resolve actions.

Every action goes through `EscalationDesk.act`, the same method the Slack, Discord and Teams
buttons and `bothub escalations` call: the user hears "... has joined", the post in the human
channel is updated, a resolved conversation can be saved to the knowledge base, exactly as from
a platform. The acting admin is the desk's `Actor` (platform "admin", named as signed in), so
the events say who did it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from bot.admin.auth import AdminSession, require_admin
from bot.admin.conversations_page import transcript_html
from bot.admin.forms import read_form
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
    post_button,
    redirect_with_notice,
    render,
    table,
    when,
)
from bot.admin.params import choice, parse_id
from bot.admin.records import AdminRecords
from bot.escalation.desk import EscalationDesk, describe
from bot.escalation.store import Actor, State, Ticket

if TYPE_CHECKING:
    from bot.app import Hub

log = structlog.get_logger(__name__)

Admin = Annotated[AdminSession, Depends(require_admin)]
FILTERS = ("active", "open", "claimed", "resolved")
ACTIONS = {"claim": ("claim", False), "release": ("release", False),
           "resolve": ("resolve", False), "resolve-save": ("resolve", True)}
LIST_LIMIT = 200
EVENT_LABELS = {"opened": "Opened", "posted": "Posted to the human channel",
                "post_failed": "Posting failed", "claimed": "Claimed", "released": "Released",
                "resolved": "Resolved", "reannounced": "Re-announced (SLA passed)"}


def actor(admin: AdminSession) -> Actor:
    """The desk's view of the admin acting: named as signed in, from the dashboard."""
    return Actor(id=admin.who[:128], name=admin.who, platform="admin")


def succeeded(answer: str, escalation_id: int) -> bool:
    """Whether `EscalationDesk.act` did it (its answer is a sentence for the agent)."""
    return answer.startswith(("You've claimed", f"Escalation #{escalation_id} is back",
                              f"Escalation #{escalation_id} is resolved"))


def _origin(ticket: Ticket) -> Html:
    return html(f"{esc(ticket.origin.platform)}<span class=\"sub\">"
                f"{esc(ticket.origin.channel)}</span>")


def _claimed(ticket: Ticket) -> Html:
    if ticket.state is State.CLAIMED:
        return html(f"{esc(ticket.claimed_by_name or ticket.claimed_by or '')}"
                    f"<span class=\"sub\">{esc(age(ticket.claimed_at))} ago</span>")
    return html('<span class="muted">–</span>')


def buttons(ticket: Ticket, csrf: str, *, back: str, small: bool = True) -> list[Html]:
    """The actions that make sense in the ticket's state, as POST forms (`small`: the queue's
    row, where saving to the knowledge base is left to the detail page)."""
    def button(action: str, label: str, tone: Any) -> Html:
        return post_button(f"/admin/escalations/{ticket.id}/{action}", label, csrf=csrf,
                           fields={"next": back}, tone=tone, small=small,
                           title=f"{label} #{ticket.id}")

    if ticket.state is State.OPEN:
        return [button("claim", "Claim", "primary"), button("resolve", "Resolve", "secondary")]
    if ticket.state is State.CLAIMED:
        save = [] if small else [button("resolve-save", "Resolve & save to KB", "secondary")]
        return [button("resolve", "Resolve", "primary"), *save,
                button("release", "Release", "secondary")]
    return []


def _row(ticket: Ticket, csrf: str, back: str) -> list[object]:
    return [link(f"/admin/escalations/{ticket.id}", f"#{ticket.id}"),
            badge(ticket.state.value),
            html(f'<span class="clip">{esc(describe(ticket.reason))}</span>'),
            _origin(ticket), ticket.user_name or ticket.user_id or "–",
            html(f"{esc(age(ticket.created_at))}<span class=\"sub\">"
                 f"{when(ticket.created_at)}</span>"),
            _claimed(ticket), join(buttons(ticket, csrf, back=back))]


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    def iso(moment: Any) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {"id": ticket.id, "state": ticket.state.value, "reason": ticket.reason,
            "reason_text": describe(ticket.reason), "detail": ticket.detail,
            "user": {"id": ticket.user_id, "name": ticket.user_name},
            "origin": {"platform": ticket.origin.platform,
                       "workspace": ticket.origin.workspace,
                       "channel": ticket.origin.channel, "thread": ticket.origin.thread},
            "destination": {"platform": ticket.destination_platform,
                            "channel": ticket.destination, "posted": ticket.posted},
            "conversation_id": ticket.conversation_id,
            "claimed_by": ticket.claimed_by_name or ticket.claimed_by,
            "created_at": iso(ticket.created_at), "claimed_at": iso(ticket.claimed_at),
            "resolved_at": iso(ticket.resolved_at), "announcements": ticket.announcements}


def _event(event: dict[str, Any]) -> Html:
    action = str(event.get("action", ""))
    who = event.get("actor_name") or event.get("actor_id") or ""
    via = event.get("platform") or ""
    detail = event.get("detail") or {}
    extra = []
    if isinstance(detail, dict):
        if detail.get("reason"):
            extra.append(describe(str(detail["reason"])))
        if detail.get("save_to_knowledge"):
            extra.append("saved to the knowledge base")
        if detail.get("error"):
            extra.append(f"error: {detail['error']}")
    by = f" by <strong>{esc(who)}</strong>" if who else ""
    src = f" <span class=\"muted\">via {esc(via)}</span>" if via else ""
    more = f" <span class=\"muted\">· {esc('; '.join(extra))}</span>" if extra else ""
    return html(f'<li><span class="t">{when(event.get("at"))}</span>'
                f"{esc(EVENT_LABELS.get(action, action.replace('_', ' ')))}{by}{src}{more}</li>")


# The pages an action's `next` may return to: the queue (or one of its views), one escalation.
_NEXT = re.compile(r"/admin/escalations(?:/[1-9][0-9]{0,17})?"
                   r"(?:\?state=(?:active|open|claimed|resolved))?")


def _safe_next(value: str | None, fallback: str) -> str:
    """Where to go after an action: one of the escalation pages the buttons come from, never
    elsewhere. Exactly those shapes, not a prefix: `/admin/escalations/%2e%2e/%2e%2e/x` starts
    alike, and a browser resolves it to `/x`."""
    return value if value and _NEXT.fullmatch(value) else fallback


def router(hub: Hub) -> APIRouter:
    records = AdminRecords(hub.database)
    api = APIRouter()

    def desk_or_none() -> EscalationDesk | None:
        return hub.engine.desk

    async def tickets(view: str) -> list[Ticket]:
        desk = desk_or_none()
        if desk is None:
            return []
        if view == "resolved":
            return await records.escalations(states=("resolved",), newest_first=True,
                                             limit=LIST_LIMIT)
        states = ("open", "claimed") if view == "active" else (view,)
        return await desk.store.tickets(states=states, limit=LIST_LIMIT)

    @api.get("/escalations")
    async def queue(request: Request, admin: Admin) -> Response:
        view = choice(request.query_params.get("state"), FILTERS, "active")
        desk = desk_or_none()
        found = await tickets(view)
        counts = await desk.store.counts() if desk is not None else {}
        base = "/admin/escalations"
        back = f"{base}?state={view}" if view != "active" else base
        pills = [(f"Open & claimed ({counts.get('open', 0) + counts.get('claimed', 0)})",
                  base, view == "active"),
                 (f"Open ({counts.get('open', 0)})", f"{base}?state=open", view == "open"),
                 (f"Claimed ({counts.get('claimed', 0)})", f"{base}?state=claimed",
                  view == "claimed"),
                 (f"Resolved ({counts.get('resolved', 0)})", f"{base}?state=resolved",
                  view == "resolved")]
        empty = {"active": "No open escalations: nobody is waiting for a person.",
                 "resolved": "Nothing resolved yet."}.get(view, f"No {view} escalations.")
        body = join([
            heading("Escalations", subtitle="Conversations handed to people. Claiming one "
                                            "keeps the bot quiet there until it is resolved."),
            html('<div class="notice warn">Escalations are switched off in this bothub.'
                 "</div>") if desk is None else html(""),
            filters(pills),
            card(table(["#", "State", "Reason", "From", "User", "Waiting", "Claimed by",
                        "Actions"], [_row(t, admin.csrf, back) for t in found],
                       empty=empty, actions_column=True), flush=True)])
        return render(request, "Escalations", body, session=admin, active="escalations")

    @api.get("/escalations/{escalation_id}")
    async def detail(request: Request, escalation_id: str, admin: Admin) -> Response:
        number = parse_id(escalation_id)
        desk = desk_or_none()
        ticket = await desk.store.get(number) if desk is not None and number else None
        if desk is None or ticket is None:
            return error_page(request, admin, 404, "Escalation not found",
                              f"There is no escalation #{escalation_id[:40]}.",
                              active="escalations")
        events = await desk.store.events(ticket.id)
        transcript = await records.transcript(ticket.conversation_id)
        back = f"/admin/escalations/{ticket.id}"
        destination = f"{ticket.destination_platform}: {ticket.destination}" + (
            "" if ticket.posted else " (not posted yet)")
        conversation = link(f"/admin/conversations/{ticket.conversation_id}",
                            f"#{ticket.conversation_id}")
        facts = html(
            '<dl class="facts">'
            f"<dt>State</dt><dd>{badge(ticket.state.value)}</dd>"
            f"<dt>Reason</dt><dd>{esc(describe(ticket.reason))}</dd>"
            + (f"<dt>Detail</dt><dd>{esc(ticket.detail)}</dd>" if ticket.detail else "")
            + f"<dt>User</dt><dd>{esc(ticket.user_name or ticket.user_id or '–')}</dd>"
            f"<dt>From</dt><dd>{esc(ticket.origin.platform)} · "
            f"{esc(ticket.origin.channel)}</dd>"
            f"<dt>Human channel</dt><dd>{esc(destination)}</dd>"
            f"<dt>Opened</dt><dd>{when(ticket.created_at)} "
            f"<span class=\"muted\">({esc(age(ticket.created_at))} ago)</span></dd>"
            f"<dt>Claimed by</dt><dd>{_claimed(ticket)}</dd>"
            f"<dt>Resolved</dt><dd>{when(ticket.resolved_at)}</dd>"
            f"<dt>Conversation</dt><dd>{conversation}</dd></dl>")
        timeline = html(f'<ul class="timeline">{join(_event(e) for e in events)}</ul>')
        summary = (card(html(f'<div class="text">{esc(ticket.summary)}</div>'),
                        title="Summary for the agent") if ticket.summary else html(""))
        body = join([
            heading(f"Escalation #{ticket.id}", subtitle=describe(ticket.reason),
                    actions=buttons(ticket, admin.csrf, back=back, small=False)),
            html('<div class="grid-side"><div>'),
            summary,
            card(transcript_html(transcript) if transcript else html(
                '<p class="muted">The conversation is gone.</p>'), title="Conversation"),
            html("</div><div>"),
            card(facts, title="Details"),
            card(timeline, title="History"),
            html("</div></div>")])
        return render(request, f"Escalation #{ticket.id}", body, session=admin,
                      active="escalations")

    async def act(number: int | None, action: str, admin: AdminSession
                  ) -> tuple[int, str, bool]:
        """(HTTP status, the desk's answer, done?) for an action on escalation `number`."""
        desk = desk_or_none()
        if action not in ACTIONS:
            return 404, f"There is no action {action[:40]!r}.", False
        if desk is None:
            return 404, "Escalations are switched off in this bothub.", False
        if number is None:
            return 404, "There is no such escalation.", False
        name, save = ACTIONS[action]
        answer = await desk.act(number, name, actor(admin), save=save)
        done = succeeded(answer, number)
        log.info("admin.escalation_action", id=number, action=action, done=done, via=admin.via)
        if not done and answer.startswith("There is no escalation"):
            return 404, answer, False
        return (200 if done else 409), answer, done

    @api.post("/escalations/{escalation_id}/{action}")
    async def action_form(request: Request, escalation_id: str, action: str,
                          admin: Admin) -> Response:
        number = parse_id(escalation_id)
        form = await read_form(request)  # before acting: a form refused (413) must do nothing
        status, answer, done = await act(number, action, admin)
        fallback = f"/admin/escalations/{number}" if status != 404 and number else \
            "/admin/escalations"
        return redirect_with_notice(request, _safe_next(form.get("next"), fallback), answer,
                                    "ok" if done else "warn" if status == 409 else "bad")

    @api.get("/api/escalations")
    async def api_list(request: Request, _admin: Admin) -> JSONResponse:
        view = choice(request.query_params.get("state"), FILTERS, "active")
        return JSONResponse({"state": view,
                             "escalations": [ticket_json(t) for t in await tickets(view)]})

    @api.get("/api/escalations/{escalation_id}")
    async def api_one(escalation_id: str, _admin: Admin) -> JSONResponse:
        number = parse_id(escalation_id)
        desk = desk_or_none()
        ticket = await desk.store.get(number) if desk is not None and number else None
        if desk is None or ticket is None:
            return JSONResponse({"error": f"no escalation {escalation_id[:40]!r}"}, 404)
        events = await desk.store.events(ticket.id)
        return JSONResponse({**ticket_json(ticket), "events": [
            {**e, "at": e["at"].isoformat() if e.get("at") else None} for e in events]})

    @api.post("/api/escalations/{escalation_id}/{action}")
    async def api_action(escalation_id: str, action: str, admin: Admin) -> JSONResponse:
        status, answer, done = await act(parse_id(escalation_id), action, admin)
        return JSONResponse({"ok": done, "message": answer}, status_code=status)

    return api
