"""The pipeline from one inbound message to one answer, as the steps of DESIGN.md.

The engine is platform-free: it receives a `Message` and a `ReplyChannel` and never learns which
platform it serves. Whatever fails (input, storage, the model, the platform) ends in a polite
reply or a log line, never in an exception that reaches a chat; and once the user's message is
stored, it stays stored whatever happens to the answer.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from adapters.base import ReplyChannel, ReplyStream
from bot import attachments, guardrails, metrics, redaction, replies
from bot.citations import citation, cited, label, quote
from bot.config import Behaviour, ChannelPolicy
from bot.escalation.desk import HANDOFF_TOOL, EscalationDesk
from bot.escalation.store import Actor, State, Ticket
from bot.kb.documents import Hit
from bot.kb.knowledge import Retrieval
from bot.llm import ChatModel, ModelError, StreamEnd, TextDelta, ToolCall
from bot.memory import ConversationMemory
from bot.model import Author, ConversationKey, Message, Reply, ReplyMode
from bot.prompt import build_messages
from bot.ratelimit import RateLimiter
from bot.store.conversations import AnswerRecord, ConversationState, ConversationStore
from bot.store.repository import StorageUnavailable

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


class Retriever(Protocol):
    async def retrieve(self, question: str, key: ConversationKey) -> Retrieval: ...


class Engine:
    def __init__(self, store: ConversationStore, behaviour: Behaviour,
                 model: ChatModel | None, knowledge: Retriever | None = None,
                 desk: EscalationDesk | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self._store = store
        self._behaviour = behaviour
        self._model = model
        self._knowledge = knowledge
        self.desk = desk
        self.limiter = limiter
        self._memory = ConversationMemory(
            store, self._summarize if model else None,
            budget=behaviour.limits.history_token_budget)

    @property
    def model_name(self) -> str | None:
        return self._model.model if self._model else None

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
            metrics.FEEDBACK.labels("up" if helpful else "down").inc()
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

    async def handle(self, message: Message, channel: ReplyChannel) -> Result:
        bound = log.bind(platform=message.platform, conversation=str(message.key),
                         message_id=message.id)
        try:
            result = await self._handle(message, channel, bound)
        except Exception:
            # A bug or a platform failure while replying: logged with its trace, never shown.
            bound.exception("engine.unexpected_error")
            reply = Reply(replies.UNEXPECTED, ReplyMode.NOTICE)
            try:
                await channel.post(reply)
            except Exception:
                bound.exception("engine.apology_not_delivered")
            result = Result(Outcome.MODEL_FAILED, reply=reply)
        metrics.MESSAGES.labels(message.platform, result.outcome.value).inc()
        return result

    async def _handle(self, message: Message, channel: ReplyChannel,
                      log: structlog.typing.FilteringBoundLogger) -> Result:
        limits = self._behaviour.limits
        # 1. input guardrails
        check = guardrails.check_input(message.text, has_attachments=bool(message.attachments),
                                       max_chars=limits.max_input_chars)
        if check.refusal:
            log.info("engine.refused", reason=check.refusal[:40])
            reply = Reply(check.refusal, ReplyMode.NOTICE)
            await channel.post(reply)
            return Result(Outcome.REFUSED, reply=reply)
        if check.redacted:
            log.info("engine.secrets_redacted", kinds=list(check.redacted))
            metrics.REDACTED.labels("input").inc(len(check.redacted))
        if redaction.looks_like_injection(check.text):
            log.info("engine.injection_attempt")  # answered as data, never as instructions
            metrics.INJECTION_ATTEMPTS.inc()

        # 2-3. accept: persist (de-duplicated) into the conversation
        try:
            conversation = await self._store.open(message.key)
            user_turn = await self._store.add_user_message(
                conversation.id, external_id=message.dedupe_id, author_id=message.author.id,
                author_name=message.author.display_name, text=check.text,
                attachments=[a.describe() for a in message.attachments])
        except StorageUnavailable as exc:
            log.error("engine.storage_unavailable", reason=exc.reason)
            reply = Reply(replies.STORAGE_DOWN, ReplyMode.NOTICE)
            await channel.post(reply)
            return Result(Outcome.STORAGE_FAILED, reply=reply)
        if user_turn is None:
            log.info("engine.duplicate", dedupe_id=message.dedupe_id)
            return Result(Outcome.DUPLICATE, conversation.id)
        if check.notice:
            await channel.post(Reply(check.notice, ReplyMode.NOTICE))
        if self.desk is not None and self.desk.serves(message.platform):
            handed = await self._hand_off(message, check.text, conversation, user_turn, channel,
                                          log)
            if handed is not None:
                return handed
        if self.limiter is not None:
            limited = await self._limited(message, conversation, channel, log)
            if limited is not None:
                return limited

        if self._model is None:
            return await self._answer_without_model(message, check.text, conversation,
                                                    user_turn, channel, log)
        return await self._answer(message, check.text, conversation, user_turn, channel, log)

    async def _hand_off(self, message: Message, text: str, conversation: ConversationState,
                        user_turn: int, channel: ReplyChannel,
                        log: structlog.typing.FilteringBoundLogger) -> Result | None:
        """Stay silent where a person has the conversation; go to people at once where the user
        asked for one or raised a policy topic. None: answer as usual."""
        assert self.desk is not None
        ticket = await self.desk.active(conversation.id)
        if ticket is not None:
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
        metrics.RATE_LIMITED.labels(key.platform, decision.scope).inc()
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
            await channel.post(Reply(self.desk.notice(ticket), ReplyMode.NOTICE))

    async def _retrieve(self, question: str, key: ConversationKey,
                        log: structlog.typing.FilteringBoundLogger) -> Retrieval | None:
        """None when there is no knowledge base or it failed: the answer goes on without it."""
        if self._knowledge is None or not question:
            return None
        try:
            return await self._knowledge.retrieve(question, key)
        except Exception:
            log.exception("engine.retrieval_failed")
            return None

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
            text=reply.text, mode=mode, status="notice"), log)
        return Result(outcome, conversation.id, reply,
                      knowledge_found=None if retrieval is None else retrieval.found)

    async def _answer(self, message: Message, text: str, conversation: ConversationState,
                      user_turn: int, channel: ReplyChannel,
                      log: structlog.typing.FilteringBoundLogger) -> Result:
        assert self._model is not None
        started = time.monotonic()
        stream = await channel.stream()  # progress is visible before any slow step
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

        history = await self._memory.recall(conversation, before_id=user_turn)
        retrieval = await self._retrieve(prepared.text, message.key, log)
        passages = retrieval.passages if retrieval is not None else None
        prompt = build_messages(self._system_prompt(policy, message), history, prepared.text,
                                prepared.image_urls, passages)
        tools = self.desk.tools(message.key) if self.desk is not None else []
        record, reply, handoff = await self._stream_answer(
            prompt, policy, stream, prepared.notes, passages or (), ref=str(user_turn),
            tools=tools, key=message.key)
        record.latency_ms = int((time.monotonic() - started) * 1000)
        await self._record(conversation, user_turn, record, log)
        await stream.finish(reply)
        if self.desk is not None:
            reason = handoff
            if reason is None and retrieval is not None and not retrieval.found and \
                    self.desk.triggers(message.key).nothing_found:
                reason = ("nothing_found", prepared.text)
            if reason is not None:
                await self._escalate_after(message, conversation, reason[0], reason[1],
                                           channel, log)
        try:  # after the answer is delivered: the user never waits for a summary
            await self._memory.fold_if_needed(conversation)
        except StorageUnavailable as exc:
            log.warning("engine.fold_not_saved", reason=exc.reason)
        outcome = Outcome.ANSWERED if record.status == "ok" else Outcome.MODEL_FAILED
        return Result(outcome, conversation.id, reply,
                      knowledge_found=None if retrieval is None else retrieval.found)

    async def _stream_answer(self, prompt: list[dict[str, object]], policy: ChannelPolicy,
                             stream: ReplyStream, notes: list[str],
                             passages: Sequence[Hit], *, ref: str,
                             tools: Sequence[dict[str, object]] = (),
                             key: ConversationKey | None = None
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
                        temperature=policy.answer.temperature, tools=tools):
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
            record.status, record.error = "failed", exc.detail
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
        cleaned = redaction.redact_output("".join(pieces).strip())
        if cleaned.changed:
            metrics.REDACTED.labels("output").inc(len(cleaned.findings))
        record.text = cleaned.text
        blocked = self.desk.withheld(record.text, key) if self.desk and key else None
        if blocked is None and redaction.leaks_prompt(record.text, str(prompt[0]["content"])):
            blocked = "the system prompt"
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
