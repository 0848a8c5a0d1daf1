"""The pipeline from one inbound message to one answer, as the steps of DESIGN.md.

The engine is platform-free: it receives a `Message` and a `ReplyChannel` and never learns which
platform it serves. Whatever fails (input, storage, the model, the platform) ends in a polite
reply or a log line, never in an exception that reaches a chat; and once the user's message is
stored, it stays stored whatever happens to the answer.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from adapters.base import ReplyChannel, ReplyStream
from bot import attachments, guardrails, metrics, redaction, replies
from bot.answer_cache import AnswerCache, AnswerKey, CachedAnswer, fingerprint
from bot.answer_timing import TimedChannel, answer_finished
from bot.budgets import BudgetAction, BudgetDecision, BudgetGuard
from bot.citations import citation, cited, label, quote
from bot.config import Behaviour, ChannelPolicy
from bot.escalation.desk import HANDOFF_TOOL, EscalationDesk
from bot.escalation.store import Actor, State, Ticket
from bot.kb.documents import Hit
from bot.kb.knowledge import Retrieval
from bot.llm import ChatModel, FailureKind, ModelError, StreamEnd, TextDelta, ToolCall
from bot.log_redaction import scrubber
from bot.memory import ConversationMemory
from bot.model import Author, Citation, ConversationKey, Message, Reply, ReplyMode
from bot.moderation import Moderator
from bot.prompt import build_messages
from bot.ratelimit import RateLimiter
from bot.store.conversations import (
    AnswerRecord,
    ConversationState,
    ConversationStore,
    InboxRow,
)
from bot.store.inbox import DONE, WAITING_MODEL, Inbox, Journal, unjournaled
from bot.store.repository import StorageUnavailable
from bot.telemetry import tracing

log = structlog.get_logger(__name__)


class Outcome(enum.StrEnum):
    ANSWERED = "answered"
    DUPLICATE = "duplicate"  # a redelivery of a message already handled: nothing is posted
    REFUSED = "refused"  # the input was not a question we can take (empty, too long, binary)
    NO_MODEL = "no_model"
    RETRIEVAL_ONLY = "retrieval_only"  # no model: answered with passages from the knowledge base
    MODEL_FAILED = "model_failed"
    STORAGE_FAILED = "storage_failed"
    RATE_LIMITED = "rate_limited"  # stored, not answered: the user is told when to retry
    ESCALATED = "escalated"  # handed to people before any answer (asked for, or a policy topic)
    HANDED_OFF = "handed_off"  # a person has the conversation: recorded, not answered


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    conversation_id: int | None = None
    reply: Reply | None = None
    # False: the knowledge base was searched and had nothing relevant (escalation acts on it);
    # None: it was not consulted.
    knowledge_found: bool | None = None
    # The model failed: the user has the documentation or an apology, and a full answer is
    # owed once a model answers again.
    model_down: bool = False


@dataclass(slots=True)
class Accepted:
    """A message past step 2 (stored with its inbox entry, or refused, or a duplicate): the
    platform may be acknowledged now. `respond` does the rest, here or on another worker."""

    message: Message
    text: str = ""
    conversation: ConversationState | None = None
    user_turn: int | None = None
    journal: Journal = field(default_factory=unjournaled)
    notice: str | None = None
    early: Result | None = None  # refused, a duplicate, storage down: only delivered
    resumed: bool = False  # another attempt at an answer a dead worker had started
    follow_up: bool = False  # the full answer owed since the model was down
    # When this worker took the message (time.monotonic()): answer timings count from here.
    accepted_at: float = field(default_factory=time.monotonic)


class Retriever(Protocol):
    async def retrieve(self, question: str, key: ConversationKey) -> Retrieval: ...


class Engine:
    def __init__(self, store: ConversationStore, behaviour: Behaviour,
                 model: ChatModel | None, knowledge: Retriever | None = None,
                 desk: EscalationDesk | None = None,
                 limiter: RateLimiter | None = None, inbox: Inbox | None = None,
                 budgets: BudgetGuard | None = None, cache: AnswerCache | None = None,
                 kb_version: Callable[[], Awaitable[str]] | None = None,
                 moderator: Moderator | None = None) -> None:
        self._store = store
        self._moderator = moderator or Moderator(None, behaviour.moderation)
        self.inbox = inbox
        self._budgets = budgets if budgets is not None and budgets.enabled else None
        self._cache = cache if kb_version is not None else None
        self._kb_version = kb_version
        self._behaviour = behaviour
        self._model = model
        self._knowledge = knowledge
        self.desk = desk
        self.limiter = limiter
        # Taken after the early returns: a refusal or a duplicate never waits behind answers.
        self._answer_slots = asyncio.Semaphore(behaviour.limits.max_concurrent_answers)
        self._memory = ConversationMemory(
            store, self._summarize if model else None,
            budget=behaviour.limits.history_token_budget)

    @property
    def model_name(self) -> str | None:
        return self._model.model if self._model else None

    async def close(self) -> None:
        if self._cache is not None:
            await self._cache.close()
        await self._moderator.close()

    def model_available(self) -> bool:
        """Whether some model of the chain may answer now (not every breaker is open)."""
        return self._model is not None and self._model.available()

    async def conversation_state(self, conversation_id: int) -> ConversationState | None:
        return await self._store.state(conversation_id)

    async def conversation_exists(self, key: ConversationKey) -> bool:
        """Raises `StorageUnavailable` when the database cannot say."""
        return await self._store.find(key) is not None

    async def record_feedback(self, ref: str, user_id: str, *, helpful: bool) -> bool:
        """A thumbs up or down from a button carrying `Reply.ref`; False for a ref that names no
        answer (forged, or from before a restore). Raises `StorageUnavailable`."""
        if not ref.isdigit() or len(ref) > 18:
            return False
        answer = await self._store.record_feedback(int(ref), user_id, 1 if helpful else -1)
        if answer is not None:
            metrics.FEEDBACK.add(1, {"value": "up" if helpful else "down"})
            if not helpful and self.desk is not None:
                await self._escalate_on_thumbs_down(int(ref), user_id)
        return answer is not None

    def _offers_handoff(self, key: ConversationKey | None) -> bool:
        return self.desk is not None and key is not None and \
            self.desk.triggers(key).user_request and self.desk.route(key) is not None

    async def request_human(self, ref: str, user: Author) -> str:
        """The "talk to a person" button on an answer: what to tell the user who pressed it
        (the conversation is told too). Raises `StorageUnavailable`."""
        found = await self._store.conversation_of(int(ref)) \
            if ref.isdigit() and len(ref) <= 18 else None
        if found is None or self.desk is None:
            return "Sorry, I couldn't find that conversation."
        if await self._escalate_and_tell(*found, user, reason="user_request",
                                         detail="(the button)") is None:
            return "There's no human support connected to this conversation yet."
        return "Done: a person from our support team will join the conversation."

    async def _escalate_and_tell(self, conversation_id: int, key: ConversationKey,
                                 user: Author, *, reason: str, detail: str = "") -> Ticket | None:
        """Escalate from outside an answer (a button): the conversation is told directly."""
        assert self.desk is not None
        ticket = await self.desk.escalate(conversation_id, key,
                                          Actor(user.id, user.name, key.platform),
                                          reason=reason, detail=detail)
        if ticket is not None:
            await self.desk.tell(ticket, self.desk.notice(ticket))
        return ticket

    async def _escalate_on_thumbs_down(self, user_turn: int, user_id: str) -> None:
        assert self.desk is not None
        found = await self._store.conversation_of(user_turn)
        if found is None:
            return
        conversation_id, key = found
        needed = self.desk.triggers(key).thumbs_down
        if not needed or await self._store.unhelpful_votes(conversation_id) < needed:
            return
        await self._escalate_and_tell(conversation_id, key, Author(user_id),
                                      reason="thumbs_down")

    async def handle(self, message: Message, channel: ReplyChannel, *,
                     route: Mapping[str, Any] | None = None) -> Result:
        """Accept and answer in one go: for callers that answer while their client waits
        (web chat, console, CLI). Platforms acknowledge between `accept` and `respond`."""
        return await self.respond(await self.accept(message, route=route), channel)

    async def accept(self, message: Message, *,
                     route: Mapping[str, Any] | None = None) -> Accepted:
        """Steps 1-2: check the input, then store the (redacted) turn together with its inbox
        entry when a `route` says where to answer again after a crash. Never posts: the
        platform waits for this before it is acknowledged."""
        with tracing.span("bothub.accept", **{"bothub.platform": message.platform,
                                              "bothub.conversation": str(message.key)}), \
                structlog.contextvars.bound_contextvars(conversation=str(message.key)):
            accepted = await self._accept(message, route)
            tracing.annotate(**{"bothub.outcome": accepted.early.outcome.value
                                if accepted.early else "accepted"})
            return accepted

    async def _accept(self, message: Message, route: Mapping[str, Any] | None) -> Accepted:
        limits = self._behaviour.limits
        check = guardrails.check_input(message.text, has_attachments=bool(message.attachments),
                                       max_chars=limits.max_input_chars)
        bound = log.bind(platform=message.platform,
                         message_id=message.id)
        if check.refusal:
            bound.info("engine.refused", reason=check.refusal[:40])
            return Accepted(message, early=Result(
                Outcome.REFUSED, reply=Reply(check.refusal, ReplyMode.NOTICE)))
        if check.redacted:
            bound.info("engine.secrets_redacted", kinds=list(check.redacted))
            metrics.REDACTED.add(len(check.redacted), {"direction": "input"})
        if redaction.looks_like_injection(check.text):
            bound.info("engine.injection_attempt")  # answered as data, never as instructions
            metrics.INJECTION_ATTEMPTS.add(1)
        text = scrubber.hide_configured(check.text)  # bothub's own secrets, pasted back
        row = None
        if route is not None and self.inbox is not None:
            row = InboxRow(platform=message.platform, envelope=message.envelope(text),
                           route=route, worker=self.inbox.worker, lease=self.inbox.lease)
        try:
            conversation = await self._store.open(message.key)
            stored = await self._store.add_user_message(
                conversation.id, external_id=message.dedupe_id, author_id=message.author.id,
                author_name=message.author.display_name, text=text,
                attachments=[a.describe() for a in message.attachments], inbox=row)
        except StorageUnavailable as exc:
            bound.error("engine.storage_unavailable", reason=exc.reason)
            return Accepted(message, early=Result(
                Outcome.STORAGE_FAILED, reply=Reply(replies.STORAGE_DOWN, ReplyMode.NOTICE)))
        if stored is None:
            bound.info("engine.duplicate", dedupe_id=message.dedupe_id)
            return Accepted(message, early=Result(Outcome.DUPLICATE, conversation.id))
        user_turn, entry = stored
        journal = Journal(self.inbox, entry) if entry is not None else unjournaled()
        return Accepted(message, text, conversation, user_turn, journal,
                        notice=check.notice)

    async def respond(self, accepted: Accepted, channel: ReplyChannel) -> Result:
        """Steps 3-11 for an accepted message; the inbox entry is settled once the answer is
        delivered (a crash before that leaves it to another worker)."""
        message = accepted.message
        conversation_id = accepted.conversation.id if accepted.conversation else None
        with tracing.span("bothub.respond", **{"bothub.platform": message.platform,
                                               "bothub.conversation": str(message.key),
                                               "bothub.conversation_id": conversation_id,
                                               "bothub.resumed": accepted.resumed}), \
                structlog.contextvars.bound_contextvars(conversation=str(message.key),
                                                        conversation_id=conversation_id):
            result = await self._respond_timed(accepted, channel)
            tracing.annotate(**{"bothub.outcome": result.outcome.value})
            return result

    async def _respond_timed(self, accepted: Accepted, channel: ReplyChannel) -> Result:
        message = accepted.message
        channel = TimedChannel(channel, platform=message.platform, since=accepted.accepted_at)
        bound = log.bind(platform=message.platform, message_id=message.id,
                         attempt="resumed" if accepted.resumed else None)
        entry = accepted.journal.entry_id
        if self.inbox is not None and entry is not None:
            self.inbox.active.add(entry)  # its lease is renewed while this answer runs
        try:
            if accepted.early is not None:
                result = await self._respond(accepted, channel, bound)
            else:
                async with self._answer_slot():
                    result = await self._respond(accepted, channel, bound)
        except Exception:
            # A bug or a platform failure while replying: logged with its trace, never shown.
            bound.exception("engine.unexpected_error")
            reply = Reply(replies.UNEXPECTED, ReplyMode.NOTICE)
            try:
                await channel.post(reply)
            except Exception:
                bound.exception("engine.apology_not_delivered")
            result = Result(Outcome.MODEL_FAILED, reply=reply)
        finally:  # settled below; or cancelled (a shutdown): the lease lapses, another answers
            if self.inbox is not None and entry is not None:
                self.inbox.active.discard(entry)
        answer_finished(message.platform, result.outcome.value, accepted.accepted_at)
        bound.info("engine.handled", outcome=result.outcome.value,
                   seconds=round(time.monotonic() - accepted.accepted_at, 3))
        await self._settle(accepted, result, bound)
        return result

    @asynccontextmanager
    async def _answer_slot(self) -> AsyncIterator[None]:
        """One of this worker's `max_concurrent_answers`; waiting for it shows on /metrics."""
        if not self._answer_slots.locked():
            async with self._answer_slots:
                yield
            return
        metrics.ANSWERS_WAITING.add(1)
        try:
            await self._answer_slots.acquire()
        finally:
            metrics.ANSWERS_WAITING.add(-1)
        try:
            yield
        finally:
            self._answer_slots.release()

    async def _settle(self, accepted: Accepted, result: Result,
                      log: structlog.typing.FilteringBoundLogger) -> None:
        journal = accepted.journal
        if self.inbox is None or journal.entry_id is None:
            return
        try:
            if result.model_down and self._model is not None:
                await self.inbox.finish(journal.entry_id, WAITING_MODEL,
                                        retry_in=FOLLOW_UP_RETRY)
            else:
                await self.inbox.finish(journal.entry_id, DONE)
        except StorageUnavailable as exc:  # answered; another worker may answer again later
            log.error("engine.inbox_not_settled", entry=journal.entry_id, reason=exc.reason)

    async def _respond(self, accepted: Accepted, channel: ReplyChannel,
                       log: structlog.typing.FilteringBoundLogger) -> Result:
        if accepted.early is not None:
            if accepted.early.reply is not None:
                await channel.post(accepted.early.reply)
            return accepted.early
        message, text = accepted.message, accepted.text
        conversation, user_turn = accepted.conversation, accepted.user_turn
        assert conversation is not None and user_turn is not None
        if accepted.resumed or accepted.follow_up:
            settled = await self._already_answered(accepted, channel, log)
            if settled is not None:
                return settled
        elif accepted.notice:
            await channel.post(Reply(accepted.notice, ReplyMode.NOTICE, aside=True))
        if self.desk is not None and self.desk.serves(message.platform):
            handed = await self._hand_off(message, text, conversation, user_turn, channel,
                                          log, relay=not accepted.follow_up)
            if handed is not None:
                return handed
        if self.limiter is not None and not (accepted.resumed or accepted.follow_up):
            limited = await self._limited(message, conversation, channel, log)
            if limited is not None:
                return limited

        budget = await self._budget(message.key, log)
        if self._model is None or budget.action is BudgetAction.RETRIEVAL_ONLY:
            return await self._answer_without_model(message, text, conversation,
                                                    user_turn, channel, log)
        return await self._answer(accepted, channel, log, model=budget.model)

    async def _budget(self, key: ConversationKey,
                      log: structlog.typing.FilteringBoundLogger) -> BudgetDecision:
        """The workspace's spending so far decides the model: the usual one, a cheaper one, or
        none (the documentation answers). The alert is raised by exactly one worker."""
        if self._budgets is None:
            return BudgetDecision()
        decision = await self._budgets.decide(key.platform, key.workspace)
        if decision.alert:
            log.warning("budget.alert", alert=decision.alert, workspace=key.workspace,
                        action=decision.action.value)
        return decision

    async def _already_answered(self, accepted: Accepted, channel: ReplyChannel,
                                log: structlog.typing.FilteringBoundLogger) -> Result | None:
        """A retry finds the work done: a dead worker stored the answer but may not have
        delivered it (it is shown again, editing what was posted); or the full answer owed
        after an outage is there already. None: answer."""
        assert self.inbox is not None and accepted.user_turn is not None
        stored = await self.inbox.answer_to(accepted.user_turn)
        if stored is None or (accepted.follow_up and stored.status != "ok"):
            return None
        if accepted.follow_up:
            return Result(Outcome.ANSWERED, accepted.conversation.id if accepted.conversation
                          else None)
        mode = ReplyMode.MODEL if stored.mode == "cache" else \
            ReplyMode(stored.mode) if stored.mode in set(ReplyMode) else ReplyMode.NOTICE
        reply = Reply(stored.text, mode, ref=str(accepted.user_turn) if mode != ReplyMode.NOTICE
                      else "")
        log.info("engine.redelivered_stored_answer", answer=stored.id)
        await channel.post(reply)
        return Result(Outcome.ANSWERED if stored.status == "ok" else Outcome.MODEL_FAILED,
                      stored.conversation_id, reply,
                      model_down=stored.status == "failed" and stored.model != "")

    async def _hand_off(self, message: Message, text: str, conversation: ConversationState,
                        user_turn: int, channel: ReplyChannel,
                        log: structlog.typing.FilteringBoundLogger, *,
                        relay: bool = True) -> Result | None:
        """Stay silent where a person has the conversation; go to people at once where the user
        asked for one or raised a policy topic. None: answer as usual."""
        assert self.desk is not None
        ticket = await self.desk.active(conversation.id)
        if ticket is not None:
            if relay:
                await self.desk.user_message(ticket, message.author.name, text)
            if ticket.state is State.CLAIMED:
                log.info("engine.handed_off", escalation=ticket.id)
                return Result(Outcome.HANDED_OFF, conversation.id)
            return None
        trigger = self.desk.before_answer(text, message.key)
        if trigger is None:
            return None
        try:
            ticket = await self.desk.escalate(
                conversation.id, message.key,
                Actor(message.author.id, message.author.name, message.platform),
                reason=trigger.reason, detail=text)
        except StorageUnavailable as exc:
            log.error("engine.escalation_not_saved", reason=exc.reason)
            return None  # answer as usual rather than leave the user with nothing
        if ticket is None:
            return None
        reply = Reply(trigger.reply or self.desk.notice(ticket), ReplyMode.NOTICE)
        if trigger.reply:
            reply = Reply(f"{trigger.reply}\n\n{self.desk.notice(ticket)}", ReplyMode.NOTICE)
        await channel.post(reply)
        await self._record(conversation, user_turn, AnswerRecord(
            text=reply.text, mode="escalation", status="notice"), log)
        return Result(Outcome.ESCALATED, conversation.id, reply)

    async def _limited(self, message: Message, conversation: ConversationState,
                       channel: ReplyChannel,
                       log: structlog.typing.FilteringBoundLogger) -> Result | None:
        """Too many questions too fast: the question is kept (it is stored already) and the
        user is told when to try again, once per wait, never on every message."""
        assert self.limiter is not None
        key = message.key
        decision = await self.limiter.check(platform=key.platform, workspace=key.workspace,
                                            channel=key.channel, user=message.author.id)
        if decision.allowed:
            return None
        metrics.RATE_LIMITED.add(1, {"platform": key.platform, "scope": decision.scope})
        log.info("engine.rate_limited", scope=decision.scope,
                 retry_after=round(decision.retry_after, 1), told=decision.notify)
        reply = Reply(replies.rate_limited(decision.scope, decision.retry_after),
                      ReplyMode.NOTICE)
        if decision.notify:
            await channel.post(reply)
        return Result(Outcome.RATE_LIMITED, conversation.id, reply if decision.notify else None)

    async def _escalate_after(self, message: Message, conversation: ConversationState,
                              reason: str, detail: str, channel: ReplyChannel,
                              log: structlog.typing.FilteringBoundLogger) -> None:
        """The answer is out; people are brought in as well, and the user is told."""
        assert self.desk is not None
        try:
            ticket = await self.desk.escalate(
                conversation.id, message.key,
                Actor(message.author.id, message.author.name, message.platform),
                reason=reason, detail=detail)
        except StorageUnavailable as exc:
            log.error("engine.escalation_not_saved", reason=exc.reason)
            return
        if ticket is not None:
            await channel.post(Reply(self.desk.notice(ticket), ReplyMode.NOTICE, aside=True))

    async def _retrieve(self, question: str, key: ConversationKey,
                        log: structlog.typing.FilteringBoundLogger) -> Retrieval | None:
        """None when there is no knowledge base or it failed: the answer goes on without it."""
        if self._knowledge is None or not question:
            return None
        with tracing.span("bothub.retrieve", **{"bothub.scope": str(key)}):
            try:
                retrieval = await self._knowledge.retrieve(question, key)
            except Exception as exc:
                log.exception("engine.retrieval_failed")
                tracing.fail(type(exc).__name__)
                return None
            tracing.annotate(**{"bothub.passages": len(retrieval.passages),
                                "bothub.found": retrieval.found})
            return retrieval

    async def _answer_without_model(self, message: Message, text: str,
                                    conversation: ConversationState, user_turn: int,
                                    channel: ReplyChannel,
                                    log: structlog.typing.FilteringBoundLogger) -> Result:
        """The retrieval-only mode: the best passages, quoted with their sources, marked."""
        retrieval = await self._retrieve(text, message.key, log)
        if retrieval is not None and retrieval.found:
            reply = knowledge_reply(retrieval.passages, ref=str(user_turn),
                                    intro=replies.KNOWLEDGE_ONLY,
                                    handoff=self._offers_handoff(message.key))
            outcome, mode = Outcome.RETRIEVAL_ONLY, "retrieval_only"
        else:
            searched = retrieval is not None
            reply = Reply(replies.NOTHING_FOUND_NO_MODEL if searched else replies.NO_MODEL,
                          ReplyMode.NOTICE)
            outcome, mode = Outcome.NO_MODEL, "no_model"
        await channel.post(reply)
        await self._record(conversation, user_turn, AnswerRecord(
            text=reply.text, mode=mode, status="notice", sources=sources(reply)), log)
        return Result(outcome, conversation.id, reply,
                      knowledge_found=None if retrieval is None else retrieval.found)

    async def _answer(self, accepted: Accepted, channel: ReplyChannel,
                      log: structlog.typing.FilteringBoundLogger, *,
                      model: str | None = None) -> Result:
        assert self._model is not None
        message, text = accepted.message, accepted.text
        conversation, user_turn = accepted.conversation, accepted.user_turn
        assert conversation is not None and user_turn is not None
        started = time.monotonic()
        # Progress is visible before any slow step. The full answer owed after an outage is
        # posted whole, and only if it works: a user is not shown a second failure.
        stream: ReplyStream = _Withheld() if accepted.follow_up else await channel.stream()
        policy = self._behaviour.policy_for(message.platform, message.key.workspace,
                                            message.key.channel)
        prepared = await attachments.prepare(text, message.attachments, self._model,
                                             self._behaviour.limits)
        if prepared.records and prepared.text != text:
            prepared.text = redaction.redact_secrets(prepared.text).text  # spoken secrets too
            await self._store.update_user_text(user_turn, prepared.text, prepared.records)
        if prepared.empty:
            reply = Reply("\n".join(prepared.notes) or replies.EMPTY, ReplyMode.NOTICE)
            await stream.finish(reply)
            return Result(Outcome.REFUSED, conversation.id, reply)

        verdict = await self._moderator.check_input(prepared.text, images=prepared.image_urls)
        if verdict.flagged:  # only the redacted text was sent to be checked
            log.info("engine.moderation_flagged", categories=verdict.categories)
            reply = Reply(replies.MODERATION_DECLINED, ReplyMode.NOTICE)
            await self._record(conversation, user_turn, AnswerRecord(
                text=reply.text, mode="moderation", status="notice",
                error="moderation: " + ", ".join(verdict.categories)), log)
            await stream.finish(reply)
            return Result(Outcome.REFUSED, conversation.id, reply)
        history = await self._memory.recall(conversation, before_id=user_turn)
        cache_key = None
        if self._cache is not None and not history.turns and not history.summary and \
                not message.attachments and not accepted.follow_up:
            cache_key = await self._cache_key(prepared.text, message, policy,
                                              model or self._model.model)
            cached = await self._cache.get(cache_key)
            if cached is not None:
                return await self._answer_from_cache(cached, accepted, stream, log)
        retrieval = await self._retrieve(prepared.text, message.key, log)
        passages = retrieval.passages if retrieval is not None else None
        prompt = build_messages(self._system_prompt(policy, message), history, prepared.text,
                                prepared.image_urls, passages)
        tools = self.desk.tools(message.key) if self.desk is not None else []
        record, reply, handoff = await self._stream_answer(
            prompt, policy, stream, prepared.notes, passages or (), ref=str(user_turn),
            tools=tools, key=message.key, model=model)
        record.sources = sources(reply)
        record.latency_ms = int((time.monotonic() - started) * 1000)
        if not await self._still_ours(accepted, log):
            return Result(Outcome.DUPLICATE, conversation.id)
        if record.status == "failed" and accepted.journal.entry_id is not None \
                and not accepted.follow_up:
            reply = replace(reply, text=f"{reply.text}\n\n{replies.WILL_FOLLOW_UP}")
        if accepted.follow_up:
            if record.status != "ok":
                log.info("engine.follow_up_postponed", error=record.error[:100])
                return Result(Outcome.MODEL_FAILED, conversation.id, None, model_down=True)
            reply = replace(reply, text=f"{replies.FOLLOW_UP}\n\n{reply.text}")
            await self._record(conversation, user_turn, record, log)
            await channel.post(reply)
            return Result(Outcome.ANSWERED, conversation.id, reply)
        await self._record(conversation, user_turn, record, log)
        await stream.finish(reply)
        if cache_key is not None and self._cache is not None and record.status == "ok" and \
                handoff is None and reply.mode is ReplyMode.MODEL and \
                not _names(message.author.display_name, record.text):
            # After the answer is shown: the user does not wait for it. Never one user's name
            # in another's answer: personal answers are not kept.
            await self._cache.put(cache_key, CachedAnswer(
                record.text, [asdict(c) for c in reply.citations], record.model))
        if self.desk is not None:
            reason = handoff
            if reason is None and retrieval is not None and not retrieval.found and \
                    self.desk.triggers(message.key).nothing_found:
                reason = ("nothing_found", prepared.text)
            if reason is not None:
                await self._escalate_after(message, conversation, reason[0], reason[1],
                                           channel, log)
        try:  # after the answer is delivered: the user never waits for a summary
            await self._memory.fold_if_needed(conversation, history,
                                              (prepared.text, record.text))
        except StorageUnavailable as exc:
            log.warning("engine.fold_not_saved", reason=exc.reason)
        outcome = Outcome.ANSWERED if record.status == "ok" else Outcome.MODEL_FAILED
        return Result(outcome, conversation.id, reply,
                      knowledge_found=None if retrieval is None else retrieval.found,
                      model_down=record.status == "failed")

    async def _still_ours(self, accepted: Accepted,
                          log: structlog.typing.FilteringBoundLogger) -> bool:
        """False when another worker took this question over while the answer was written
        (this one was too slow to renew its lease): that worker answers, this one stays quiet
        and stores nothing, so the conversation holds one answer."""
        entry = accepted.journal.entry_id
        if self.inbox is None or entry is None:
            return True
        try:
            if await self.inbox.holds(entry):
                return True
        except StorageUnavailable:
            return True  # cannot tell: answering twice beats not answering
        log.warning("engine.lease_lost", entry=entry)
        return False

    async def _cache_key(self, question: str, message: Message, policy: ChannelPolicy,
                         model: str) -> AnswerKey:
        """Same question, same place, same documents, same model and policy. The prompt is
        rendered without the user's name, so that the key is shared by everyone who asks."""
        assert self._kb_version is not None
        key = message.key
        persona = policy.persona.render(platform=key.platform, channel=key.channel,
                                        user_name="", answer_words=policy.answer.max_words,
                                        today=datetime.now(UTC).date())
        return AnswerKey(question=question, platform=key.platform, workspace=key.workspace,
                         channel=key.channel, kb_version=await self._kb_version(), model=model,
                         policy=fingerprint(persona, policy.answer.model_dump(mode="json")))

    async def _answer_from_cache(self, cached: CachedAnswer, accepted: Accepted,
                                 stream: ReplyStream,
                                 log: structlog.typing.FilteringBoundLogger) -> Result:
        """The answer given to the same first question here before, with the same documents:
        shown at once and stored like any answer, at no cost."""
        assert accepted.conversation is not None and accepted.user_turn is not None
        citations = tuple(Citation(**c) for c in cached.citations
                          if set(c) <= {"index", "title", "url", "snippet"})
        reply = Reply(cached.text, ReplyMode.MODEL, citations, ref=str(accepted.user_turn),
                      handoff=self._offers_handoff(accepted.message.key))
        await self._record(accepted.conversation, accepted.user_turn, AnswerRecord(
            text=cached.text, mode="cache", model=cached.model, sources=sources(reply)), log)
        await stream.finish(reply)
        log.info("engine.answered_from_cache")
        return Result(Outcome.ANSWERED, accepted.conversation.id, reply)

    async def _stream_answer(self, prompt: list[dict[str, object]], policy: ChannelPolicy,
                             stream: ReplyStream, notes: list[str],
                             passages: Sequence[Hit], *, ref: str,
                             tools: Sequence[dict[str, object]] = (),
                             key: ConversationKey | None = None, model: str | None = None
                             ) -> tuple[AnswerRecord, Reply, tuple[str, str] | None]:
        """The answer, streamed; also (reason, detail) when it should go to people too. The
        caller finishes the stream once the answer is stored, so that its buttons (feedback,
        a person) never point at an answer the database does not have yet."""
        assert self._model is not None
        pieces: list[str] = []
        handoff: tuple[str, str] | None = None
        record = AnswerRecord(text="", mode=ReplyMode.MODEL.value, model=self._model.model)
        try:
            async with self._model_slot():
                async for event in self._model.stream(
                        prompt, max_tokens=policy.answer.max_output_tokens,
                        temperature=policy.answer.temperature, tools=tools, model=model):
                    if isinstance(event, TextDelta):
                        pieces.append(event.text)
                        await stream.append(event.text)
                    elif isinstance(event, ToolCall):
                        if event.name == HANDOFF_TOOL["function"]["name"]:  # type: ignore[index]
                            handoff = ("model_uncertain",
                                       str(event.arguments.get("reason", ""))[:500])
                    elif isinstance(event, StreamEnd):
                        record.model = event.usage.model  # a fallback may have answered
                        record.tokens_in = event.usage.tokens_in
                        record.tokens_out = event.usage.tokens_out
                        record.cost_usd = event.usage.cost_usd
                        if event.first_token_seconds is not None:
                            record.first_token_ms = int(event.first_token_seconds * 1000)
        except ModelError as exc:
            # "failed": the model was down, a full answer is owed; "rejected": it refused this
            # request, which asking again would not change.
            record.status = "rejected" if exc.kind is FailureKind.REJECTED else "failed"
            record.error = exc.detail
            partial = "".join(pieces).strip()
            record.text = partial
            if partial:
                reply = Reply(f"{partial}\n\n{replies.CUT_OFF}", ReplyMode.MODEL,
                              cited(partial, passages), ref=ref)
            elif passages:  # outage mode: what the documentation says, marked as such
                reply = knowledge_reply(passages, ref=ref, intro=replies.MODEL_DOWN_KNOWLEDGE)
                record.mode = ReplyMode.RETRIEVAL_ONLY.value
            else:
                reply = Reply(replies.model_failed(exc.kind), ReplyMode.NOTICE)
            return record, reply, None
        cleaned = redaction.redact_output(scrubber.hide_configured("".join(pieces).strip()))
        if cleaned.changed:
            metrics.REDACTED.add(len(cleaned.findings), {"direction": "output"})
        record.text = cleaned.text
        blocked = self.desk.withheld(record.text, key) if self.desk and key else None
        if blocked is None and redaction.leaks_prompt(record.text, str(prompt[0]["content"])):
            blocked = "the system prompt"
        if blocked is None and self._moderator.checks_output:
            verdict = await self._moderator.check_output(record.text)
            if verdict.flagged:
                blocked = "moderation: " + ", ".join(verdict.categories)
        if blocked is not None:
            record.status, record.error = "withheld", f"blocked output pattern: {blocked}"[:200]
            reply = Reply(replies.WITHHELD, ReplyMode.NOTICE)
            return record, reply, ("guardrail", blocked)
        if not record.text and handoff is not None:
            reply = Reply(replies.HANDING_OVER, ReplyMode.NOTICE)
            record.text = reply.text
            return record, reply, handoff
        shown = "\n\n".join([record.text, *notes]) if notes else record.text
        reply = Reply(shown, ReplyMode.MODEL, cited(record.text, passages), ref=ref,
                      handoff=self._offers_handoff(key))
        return record, reply, handoff

    def _system_prompt(self, policy: ChannelPolicy, message: Message) -> str:
        channel = message.channel_name or ("a direct message" if message.direct
                                           else message.key.channel)
        return policy.persona.render(platform=message.platform, channel=channel,
                                     user_name=message.author.name,
                                     answer_words=policy.answer.max_words,
                                     today=datetime.now(UTC).date())

    def _model_slot(self) -> AbstractAsyncContextManager[None]:
        """One of the model calls all workers may run at once (no cap without a limiter)."""
        return self.limiter.model_slot() if self.limiter is not None else nullcontext()

    async def _summarize(self, instructions: str, material: str, max_tokens: int) -> str:
        assert self._model is not None
        async with self._model_slot():
            text, _usage = await self._model.complete(
                [{"role": "system", "content": instructions},
                 {"role": "user", "content": material}], max_tokens=max_tokens)
        return text

    async def _record(self, conversation: ConversationState, user_turn: int,
                      record: AnswerRecord, log: structlog.typing.FilteringBoundLogger) -> None:
        try:
            await self._store.add_answer(conversation.id, user_turn, record)
        except StorageUnavailable as exc:  # the user has the answer; only our record is lost
            log.error("engine.answer_not_recorded", reason=exc.reason)


def sources(reply: Reply) -> list[dict[str, Any]]:
    """An answer's citations as stored with it (the admin transcript shows them)."""
    return [asdict(citation) for citation in reply.citations]


def _names(name: str, text: str) -> bool:
    """Whether `text` addresses the user by name (a whole word, case aside)."""
    return len(name) >= 2 and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text,
                                        re.IGNORECASE) is not None


class _Withheld:
    """A stream that shows nothing: the answer is posted whole once it is known to be good."""

    async def append(self, text: str) -> None:
        pass

    async def finish(self, reply: Reply) -> None:
        pass


# How long a full answer owed after an outage waits before it is tried again.
FOLLOW_UP_RETRY = timedelta(seconds=30)


def knowledge_reply(passages: Sequence[Hit], *, ref: str, intro: str,
                    handoff: bool = False) -> Reply:
    """The best passages quoted with their sources: the answer when no model can write one."""
    shown = passages[:3]
    parts = [intro]
    for number, hit in enumerate(shown, start=1):
        parts.append(f"**[{number}] {label(hit)}**\n{quote(hit.chunk.text)}")
    return Reply("\n\n".join(parts), ReplyMode.RETRIEVAL_ONLY,
                 tuple(citation(n, hit) for n, hit in enumerate(shown, start=1)), ref=ref,
                 handoff=handoff)
