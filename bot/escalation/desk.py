"""The escalation desk: hands conversations to people and steps aside while they help.

The engine asks the desk before answering (is a person already on it? did the user ask for
one, or raise a topic that belongs to people?) and after (nothing found, the model unsure, a
withheld answer). Adapters bring the desk their `EscalationOutlet`, through which it posts to
the human channels, keeps those posts current and writes into users' conversations; agents act
through the desk by button or by @-mention, on any platform. The state lives in SQL, so a
restart, or another worker, picks up where this one stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from adapters.base import DestinationUnavailable, EscalationOutlet
from bot import metrics
from bot.config import EscalationConfig, EscalationTriggers
from bot.escalation import triggers as detect
from bot.escalation.store import Actor, Change, EscalationStore, State, Ticket
from bot.kb.knowledge import KnowledgeBase
from bot.model import ConversationKey, Reply, ReplyMode
from bot.store.conversations import ConversationStore
from bot.store.repository import StorageUnavailable
from bot.telemetry import tracing

log = structlog.get_logger(__name__)

RETRY_POST_AFTER = timedelta(minutes=1)
COMMAND = re.compile(r"^\s*(claim|release|resolve)\b(?:\s+#?(\d{1,18}))?(?:\s+(save))?\s*$",
                     re.IGNORECASE)
REASONS = {
    "user_request": "asked for a person",
    "nothing_found": "the knowledge base had nothing on it",
    "model_uncertain": "the assistant could not answer reliably",
    "thumbs_down": "several answers were marked unhelpful",
    "guardrail": "an answer was withheld by a guardrail",
}
HANDOFF_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "hand_off_to_human",
        "description": (
            "Bring a human support agent into this conversation. Call it when the knowledge "
            "passages do not answer the question, when you are not confident your answer is "
            "right, or when the user needs something only a person can do. You may still "
            "answer briefly with what you know."),
        "parameters": {"type": "object", "additionalProperties": False,
                       "properties": {"reason": {"type": "string",
                                                 "description": "One short sentence."}},
                       "required": ["reason"]},
    },
}


def describe(reason: str) -> str:
    if reason.startswith("topic:"):
        return f"policy topic: {reason.removeprefix('topic:')}"
    return REASONS.get(reason, reason)


@dataclass(frozen=True, slots=True)
class Trigger:
    """Why a message goes to people before any answer, and what the user is told."""

    reason: str
    reply: str | None = None  # a topic's canned reply; None: the desk's own notice


class EscalationDesk:
    def __init__(self, store: EscalationStore, conversations: ConversationStore,
                 config: EscalationConfig, *, channels: dict[str, str | None]) -> None:
        """`channels`: each platform's own escalation channel (SLACK_ESCALATION_CHANNEL...)."""
        self.store = store
        self._conversations = conversations
        self._config = config
        self._channels = {platform: channel for platform, channel in channels.items()
                          if channel}
        self._topics = [detect.Topic(t.name, tuple(t.patterns), t.reply)
                        for t in config.topics] if config.topics is not None \
            else list(detect.DEFAULT_TOPICS)
        self._outlets: dict[str, EscalationOutlet] = {}
        self.saver: Saver | None = None

    # -- wiring ---------------------------------------------------------------------------------

    def register(self, outlet: EscalationOutlet) -> None:
        self._outlets[outlet.name] = outlet

    def serves(self, platform: str) -> bool:
        """Can conversations on this platform be escalated at all (is it connected)? Those
        that cannot have no escalation to look up."""
        return platform in self._outlets

    def route(self, key: ConversationKey) -> tuple[str, str] | None:
        """(platform, channel) of the human channel for this conversation, when both ends are
        reachable: the user's platform can be written to and the destination is served."""
        if key.platform not in self._outlets:
            return None
        destination = self._config.route_for(key.platform, key.workspace, key.channel)
        if destination is None and key.platform in self._channels:
            destination = f"{key.platform}:{self._channels[key.platform]}"
        if destination is None:
            return None
        platform, _, channel = destination.partition(":")
        return (platform, channel) if platform in self._outlets and channel else None

    def triggers(self, key: ConversationKey) -> EscalationTriggers:
        return self._config.triggers_for(key.platform, key.workspace, key.channel)

    def tools(self, key: ConversationKey) -> list[dict[str, Any]]:
        """The hand-off tool offered to the model where it may escalate."""
        if self.triggers(key).model_uncertain and self.route(key) is not None:
            return [HANDOFF_TOOL]
        return []

    # -- the engine's questions -----------------------------------------------------------------

    async def active(self, conversation_id: int) -> Ticket | None:
        try:
            return await self.store.active(conversation_id)
        except StorageUnavailable as exc:
            log.warning("escalation.lookup_failed", reason=exc.reason)
            return None

    def before_answer(self, text: str, key: ConversationKey) -> Trigger | None:
        if self.route(key) is None:
            return None
        wanted = self.triggers(key)
        if wanted.user_request and detect.asks_for_human(text, self._config.request_phrases):
            return Trigger("user_request")
        if wanted.policy_topics:
            topic = detect.match_topic(text, self._topics)
            if topic is not None:
                return Trigger(f"topic:{topic.name}", topic.reply)
        return None

    def withheld(self, answer: str, key: ConversationKey) -> str | None:
        """The blocked pattern an answer contains, where blocked answers escalate."""
        if not self._config.blocked_output or not self.triggers(key).guardrail:
            return None
        return detect.blocked_output(answer, self._config.blocked_output)

    def notice(self, ticket: Ticket) -> str:
        if ticket.state is State.CLAIMED:
            return (f"{ticket.claimed_by_name or 'A person from our support team'} is already "
                    "looking into this conversation.")
        minutes = round(self._config.sla_minutes)
        return ("I've asked a person from our support team to take over this conversation; "
                f"someone usually replies within about {minutes} minutes. I'll step aside once "
                "they join.")

    async def escalate(self, conversation_id: int, key: ConversationKey, user: Actor, *,
                       reason: str, detail: str = "") -> Ticket | None:
        """Open (or join) the conversation's escalation and post it to the human channel.
        None when this conversation has no human channel."""
        route = self.route(key)
        if route is None:
            return None
        with tracing.span("bothub.escalate", **{"bothub.reason": reason.split(":")[0],
                                                "bothub.destination": ":".join(route)}):
            return await self._open(conversation_id, key, user, route, reason=reason,
                                    detail=detail)

    async def _open(self, conversation_id: int, key: ConversationKey, user: Actor,
                    route: tuple[str, str], *, reason: str, detail: str) -> Ticket:
        active = await self.store.active(conversation_id)
        if active is not None:  # a second trigger joins the first (no summary to build)
            return active
        summary = await self._summary(conversation_id)
        ticket, created = await self.store.open(
            conversation_id, key, reason=reason, detail=detail[:1000], summary=summary,
            user=user, destination_platform=route[0], destination=route[1])
        if created:
            metrics.ESCALATIONS.add(1, {"platform": key.platform, "reason": reason.split(":")[0]})
            log.info("escalation.opened", id=ticket.id, reason=reason,
                     conversation=str(key), to=":".join(route))
            ticket = await self._post(ticket)
            await self.refresh_gauges()
        return ticket

    async def _summary(self, conversation_id: int, turns: int = 6) -> str:
        try:
            messages = await self._conversations.messages(conversation_id)
        except StorageUnavailable:
            return ""
        lines = []
        for stored in messages[-turns:]:
            who = "Bot" if stored.role == "assistant" else (stored.author_name or "User")
            text = " ".join(stored.text.split())
            lines.append(f"{who}: {text[:200] + '…' if len(text) > 200 else text}")
        return "\n".join(lines)

    async def _post(self, ticket: Ticket, *, mention: str = "") -> Ticket:
        outlet = self._outlets.get(ticket.destination_platform)
        try:
            if outlet is None:
                raise DestinationUnavailable(f"{ticket.destination_platform} is not connected")
            link = await self.link(ticket.origin)
            message, thread = await outlet.post_ticket(ticket.destination, ticket, link=link,
                                                       mention=mention)
        except Exception as exc:  # kept, and retried by the sweep: never lost
            log.error("escalation.post_failed", id=ticket.id, error=str(exc)[:300])
            await self.store.mark_post_failed(ticket.id, str(exc))
            return ticket
        await self.store.mark_posted(ticket.id, message_id=message, thread_id=thread)
        return await self.store.get(ticket.id) or ticket

    async def link(self, key: ConversationKey) -> str:
        """A URL of the user's conversation, where its platform has one."""
        outlet = self._outlets.get(key.platform)
        try:
            return await outlet.link(key) if outlet else ""
        except Exception:
            return ""

    async def user_message(self, ticket: Ticket, author: str, text: str) -> None:
        """A user's message in an escalated conversation: copied to the agent's thread when
        the agent works on another platform (on the same one they read the thread itself)."""
        if not ticket.cross_platform or not ticket.posted or not text:
            return
        outlet = self._outlets.get(ticket.destination_platform)
        if outlet is None:
            return
        try:
            await outlet.post_in_ticket(ticket, f"**{author or 'User'}:** {text}")
            await self.store.record(ticket.id, "relayed_to_agent")
        except Exception as exc:
            log.error("escalation.relay_to_agent_failed", id=ticket.id, error=str(exc)[:200])

    # -- agents ---------------------------------------------------------------------------------

    def is_human_channel(self, platform: str, channel: str) -> bool:
        """Is `channel` where this platform's escalations are posted?"""
        destinations = {self._channels.get(platform)} | {
            rule.to.partition(":")[2] for rule in self._config.rules
            if rule.to is not None and rule.to.startswith(platform + ":")}
        return channel in destinations

    async def command(self, text: str, agent: Actor, *, channel: str,
                      thread: str | None) -> str | None:
        """`claim`, `release` or `resolve [save]`, optionally with an escalation number, said to
        the bot in a human channel; None when the text is not such a command (or was said
        anywhere else: a user's "resolve" in their own thread is a question)."""
        match = COMMAND.match(text)
        if match is None or not self.is_human_channel(agent.platform, channel):
            return None
        action, number, save = match.group(1).lower(), match.group(2), bool(match.group(3))
        if number is None:
            ticket = await self.store.by_post(agent.platform, thread) if thread else None
            if ticket is None:
                return (f"Which escalation? Say `{action} 123` with its number, or say "
                        f"`{action}` in the escalation's thread.")
            return await self.act(ticket.id, action, agent, save=save)
        return await self.act(int(number), action, agent, save=save)

    async def act(self, escalation_id: int, action: str, agent: Actor, *,
                  save: bool = False) -> str:
        """Claim, release or resolve; the answer is for the agent who asked."""
        with tracing.span(f"bothub.escalation.{action}", **{"bothub.escalation": escalation_id,
                                                             "bothub.agent_platform":
                                                                 agent.platform or None}):
            return await self._act(escalation_id, action, agent, save=save)

    async def _act(self, escalation_id: int, action: str, agent: Actor, *, save: bool) -> str:
        ticket = await self.store.get(escalation_id)
        if ticket is None:
            return f"There is no escalation #{escalation_id}."
        if not await self._may_act(agent, ticket):
            return "Only support agents can claim or resolve escalations."
        if action == "claim":
            change, ticket = await self.store.claim(escalation_id, agent)
        elif action == "release":
            change, ticket = await self.store.release(escalation_id, agent)
        else:
            change, ticket = await self.store.resolve(escalation_id, agent,
                                                      save_to_knowledge=save)
        assert ticket is not None
        if change is not Change.DONE:
            return _refusal(change, ticket)
        log.info("escalation." + ("claimed" if action == "claim" else action + "d"),
                 id=ticket.id, agent=agent.id, platform=agent.platform)
        metrics.ESCALATION_TRANSITIONS.add(1, {"action": action})
        if action == "claim" and ticket.claimed_at is not None:
            metrics.TIME_TO_CLAIM.record(
                max(0.0, (ticket.claimed_at - ticket.created_at).total_seconds()))
        await self._show(ticket)
        await self.refresh_gauges()
        name = agent.name or "Someone"
        if action == "claim":
            await self.tell(ticket, f"{name} from our support team has joined and will "
                                          "take it from here.")
            return f"You've claimed escalation #{ticket.id}. I'll stay quiet in that thread."
        if action == "release":
            await self.tell(ticket, "Your conversation is back in our support team's "
                                          "queue; someone will pick it up shortly.")
            return f"Escalation #{ticket.id} is back in the queue."
        if save and self.saver is not None:
            await self.saver.save(ticket)
        await self.tell(ticket, "Our support team has marked this conversation as "
                                      "resolved. I'm back: ask me anything.")
        return (f"Escalation #{ticket.id} is resolved" +
                (" and will be added to the knowledge base." if save else "."))

    async def _may_act(self, agent: Actor, ticket: Ticket) -> bool:
        # The CLI and the admin dashboard are reached only by operators who proved who they
        # are there (shell access, the admin token or SSO): no channel membership to check.
        if agent.platform in ("cli", "admin"):
            return True
        if agent.platform != ticket.destination_platform:
            return False
        outlet = self._outlets.get(agent.platform)
        if outlet is None:
            return False
        try:
            return await outlet.is_agent(agent.id, ticket.destination,
                                         self._config.agents.get(agent.platform, []))
        except Exception as exc:
            log.warning("escalation.agent_check_failed", error=str(exc)[:200])
            return False

    async def agent_message(self, agent: Actor, text: str, *, thread: str) -> bool:
        """A message in an escalation's thread: relayed to the user when the agent answers
        from another platform. False when the thread is no escalation's."""
        ticket = await self.store.by_post(agent.platform, thread)
        if ticket is None:
            return False
        if not ticket.cross_platform or not text or not await self._may_act(agent, ticket):
            return True
        if ticket.state is State.RESOLVED:
            outlet = self._outlets.get(ticket.destination_platform)
            if outlet is not None:
                await _quietly(outlet.post_in_ticket(
                    ticket, "This escalation is resolved: the user no longer sees replies "
                            "here. Say `release` or open a new escalation to talk again."))
            return True
        await self.tell(ticket, f"**{agent.name or 'Support'} (support team):** {text}")
        await self.store.record(ticket.id, "relayed_to_user", agent, text=text[:4000])
        return True

    async def _show(self, ticket: Ticket) -> None:
        """Bring the post in the human channel up to date; a post someone deleted is posted
        anew (an open or claimed escalation must stay visible)."""
        outlet = self._outlets.get(ticket.destination_platform)
        if outlet is None or not ticket.posted:
            return
        try:
            await outlet.update_ticket(ticket, link=await self.link(ticket.origin))
        except DestinationUnavailable as exc:
            if ticket.state is State.RESOLVED:
                return
            log.warning("escalation.post_gone", id=ticket.id, error=str(exc)[:200])
            await self._post(ticket)
        except Exception as exc:
            log.warning("escalation.update_failed", id=ticket.id, error=str(exc)[:200])

    async def tell(self, ticket: Ticket, text: str) -> None:
        """Write into the user's conversation (not through an answer in progress)."""
        outlet = self._outlets.get(ticket.origin.platform)
        if outlet is None:
            return
        try:
            await outlet.tell(ticket.origin, Reply(text, ReplyMode.NOTICE))
        except Exception as exc:
            log.error("escalation.user_not_told", id=ticket.id, error=str(exc)[:200])

    # -- the sweep --------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Retry posts that failed; re-announce what waited past its SLA (mentioning the
        on-call group) and keep the user informed. Run by the scheduler on every worker: each
        turn is claimed in SQL, so one worker acts."""
        try:
            due = await self.store.due(sla=timedelta(minutes=self._config.sla_minutes),
                                       retry_after=RETRY_POST_AFTER)
        except StorageUnavailable as exc:
            log.warning("escalation.sweep_failed", reason=exc.reason)
            return
        for ticket in due:
            if not await self.store.take_turn(ticket):
                continue
            if not ticket.posted:
                await self._post(ticket)
                continue
            await self._reannounce(ticket)
        await self.refresh_gauges()

    async def _reannounce(self, ticket: Ticket) -> None:
        outlet = self._outlets.get(ticket.destination_platform)
        if outlet is None:
            return
        mention = self._config.on_call.get(ticket.destination_platform, "")
        waited = int((ticket.announced_at - ticket.created_at).total_seconds() // 60) \
            if ticket.announced_at else 0
        text = (f"Escalation #{ticket.id} is still waiting for someone "
                f"({describe(ticket.reason)}; open for {max(waited, 1)}+ minutes).")
        try:
            await outlet.post_in_ticket(ticket, text, mention=mention)
        except Exception as exc:
            log.error("escalation.reannounce_failed", id=ticket.id, error=str(exc)[:200])
            return
        await self.store.mark_reannounced(ticket.id)
        metrics.ESCALATION_TRANSITIONS.add(1, {"action": "reannounced"})
        await self.tell(ticket, "I'm still finding someone from our support team for "
                                      "you. Thanks for your patience.")

    async def refresh_gauges(self) -> None:
        try:
            counts = await self.store.counts()
        except StorageUnavailable:
            return
        for state in State:
            metrics.ESCALATIONS_BY_STATE.set(counts.get(state.value, 0), {"state": state.value})


class Saver:
    """Saves a resolved escalation's conversation as an entry of the knowledge base's
    `escalations` source, which its next sync indexes."""

    def __init__(self, knowledge: KnowledgeBase, conversations: ConversationStore,
                 store: EscalationStore) -> None:
        self._knowledge = knowledge
        self._conversations = conversations
        self._store = store

    async def save(self, ticket: Ticket) -> None:
        try:
            messages = await self._conversations.messages(ticket.conversation_id)
            relayed = [event for event in await self._store.events(ticket.id)
                       if event["action"] == "relayed_to_user"]
        except StorageUnavailable as exc:
            log.error("escalation.not_saved", id=ticket.id, reason=exc.reason)
            return
        question = next((m.text for m in messages if m.role == "user" and m.text), "")
        lines = [f"{'Assistant' if m.role == 'assistant' else m.author_name or 'User'}: "
                 f"{m.text}" for m in messages if m.text]
        lines += [f"{event['actor_name'] or 'Support'} (support team): "
                  f"{event['detail'].get('text', '')}" for event in relayed]
        title = " ".join(question.split())[:120] or f"Escalation #{ticket.id}"
        try:
            await self._knowledge.add_entry(title, "\n\n".join(lines))
        except Exception as exc:
            log.error("escalation.not_saved", id=ticket.id, error=str(exc)[:200])
            return
        log.info("escalation.saved_to_knowledge", id=ticket.id)


def _refusal(change: Change, ticket: Ticket) -> str:
    if change is Change.ALREADY_CLAIMED:
        return (f"Escalation #{ticket.id} is already claimed by "
                f"{ticket.claimed_by_name or ticket.claimed_by}.")
    if change is Change.ALREADY_RESOLVED:
        return f"Escalation #{ticket.id} is already resolved."
    return f"Escalation #{ticket.id} is not claimed by anyone."


async def _quietly(call: object) -> None:
    try:
        await call  # type: ignore[misc]
    except Exception as exc:
        log.warning("escalation.platform_call_failed", error=str(exc)[:200])


