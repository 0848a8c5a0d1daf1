"""Discord end to end: the real discord.py over the fake gateway and REST."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.model import ConversationKey
from bot.server import create_app, platform_adapters
from tests.adapters.worker_crash import kill_the_worker, take_over
from tests.conftest import LiveServer, make_settings, running_server, wait_for
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply


def discord_app(hub: Any) -> Any:
    return create_app(hub, services=False,
                      adapters=platform_adapters(hub, discord_update_interval=0.05))


@pytest.fixture
def server(tmp_path: Path, fake_openai: FakeOpenAI,
           fake_discord: FakeDiscord) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, fake_openai, discord_bot_token=fake_discord.bot_token,
                             discord_api_url=fake_discord.api_url)
    with running_server(settings, discord_app) as live:
        wait_for(lambda: fake_discord.connected, timeout=15)
        wait_for(lambda: fake_discord.events_named("GUILD_CREATE"), timeout=15)
        yield live


def bot_messages(fake: FakeDiscord, channel_id: str) -> list[dict[str, Any]]:
    return fake.messages(channel_id, author_id=fake.bot_user_id)


def final_answer(fake: FakeDiscord, channel_id: str, expected: str,
                 timeout: float = 10) -> dict[str, Any]:
    """Wait until the bot's last message in the channel reads `expected`."""
    return wait_for(lambda: next((m for m in bot_messages(fake, channel_id)
                                  if m["content"] == expected), None), timeout=timeout)


def test_a_mention_opens_a_thread_and_the_answer_streams_into_it(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="Open **Settings**, then Security.", chunk_delay=0.03))
    question = fake_discord.dispatch_message("how do I reset my password?",
                                             channel_id=fake_discord.general_channel_id,
                                             mentions_bot=True)
    thread_id = question["id"]  # a thread started from a message takes its id
    answer = final_answer(fake_discord, thread_id, "Open **Settings**, then Security.")
    assert fake_discord.threads[thread_id]["name"] == "how do I reset my password?"
    assert fake_discord.edit_history(answer["id"])  # it grew by edits
    sends = [c for c in fake_discord.calls if c.method == "POST" and
             c.path.endswith(f"/channels/{thread_id}/messages")]
    assert sends and all(c.json["allowed_mentions"] == {"parse": []} for c in sends)
    prompt = fake_openai.chat_requests()[-1]["messages"]
    assert prompt[-1] == {"role": "user", "content": "how do I reset my password?"}


def test_follow_ups_in_its_thread_need_no_mention_and_remember(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    first = fake_discord.dispatch_message("my plan is Team", mentions_bot=True,
                                          channel_id=fake_discord.general_channel_id)
    final_answer(fake_discord, first["id"], "You said: my plan is Team")
    fake_discord.dispatch_message("which plan am I on?", channel_id=first["id"])
    final_answer(fake_discord, first["id"], "You said: which plan am I on?")
    contents = [m["content"] for m in fake_openai.chat_requests()[-1]["messages"]]
    assert "my plan is Team" in contents

    fake_discord.dispatch_message("chatting without a mention",
                                  channel_id=fake_discord.general_channel_id)
    time.sleep(0.3)
    assert len(fake_openai.chat_requests()) == 2


def test_direct_messages_are_answered_directly(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    dm = fake_discord.open_dm("1001")
    fake_discord.dispatch_message("hello in private", channel_id=dm["id"], guild=False)
    final_answer(fake_discord, dm["id"], "You said: hello in private")


def test_no_answer_can_ping_everyone(server: LiveServer, fake_discord: FakeDiscord,
                                     fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="@everyone look! <@&1190000000000000400>"))
    question = fake_discord.dispatch_message("please say @everyone look", mentions_bot=True,
                                             channel_id=fake_discord.general_channel_id)
    final_answer(fake_discord, question["id"], "@everyone look! <@&1190000000000000400>")
    writes = [call for call in fake_discord.calls
              if (call.method == "POST" and call.path.endswith("/messages"))
              or (call.method == "PATCH" and "/messages/" in call.path)]
    assert len(writes) >= 2
    for call in writes:
        assert call.json.get("allowed_mentions") == {"parse": []}, call


def test_without_permission_to_create_threads_it_answers_in_the_channel(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    fake_discord.fail("POST /channels/{channel_id}/messages/{message_id}/threads", 403, 50013,
                      "Missing Permissions", times=5)
    fake_discord.dispatch_message("can you help?", mentions_bot=True,
                                  channel_id=fake_discord.general_channel_id)
    final_answer(fake_discord, fake_discord.general_channel_id, "You said: can you help?")


def test_a_gateway_drop_during_an_answer_resumes_without_losing_or_repeating(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="A slow and careful answer " * 4, chunk_delay=0.05))
    first = fake_discord.dispatch_message("tell me slowly", mentions_bot=True,
                                          channel_id=fake_discord.general_channel_id)
    wait_for(lambda: bot_messages(fake_discord, first["id"]))  # the answer has begun
    fake_discord.drop_gateway()
    missed = fake_discord.dispatch_message("asked while you were away", mentions_bot=True,
                                           channel_id=fake_discord.general_channel_id)
    final_answer(fake_discord, first["id"], ("A slow and careful answer " * 4).strip())
    final_answer(fake_discord, missed["id"], "You said: asked while you were away", timeout=20)
    assert fake_discord.resume_count >= 1 and fake_discord.identify_count == 1
    time.sleep(0.3)
    assert len(fake_openai.chat_requests()) == 2


def test_a_rate_limited_send_is_retried_once_and_delivered_once(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    fake_discord.rate_limit("POST /channels/{channel_id}/messages", times=1, retry_after=0.05)
    question = fake_discord.dispatch_message("hello", mentions_bot=True,
                                             channel_id=fake_discord.general_channel_id)
    final_answer(fake_discord, question["id"], "You said: hello")
    assert [m["content"] for m in bot_messages(fake_discord, question["id"])] == [
        "You said: hello"]


def test_an_archived_thread_loses_the_delivery_not_the_answer(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    first = fake_discord.dispatch_message("start", mentions_bot=True,
                                          channel_id=fake_discord.general_channel_id)
    final_answer(fake_discord, first["id"], "You said: start")
    fake_discord.set_thread_state(first["id"], archived=True, locked=True)
    fake_discord.dispatch_message("more please", channel_id=first["id"])
    wait_for(lambda: len(fake_openai.chat_requests()) == 2)
    time.sleep(0.3)
    assert [m["content"] for m in bot_messages(fake_discord, first["id"])] == [
        "You said: start"]


def test_bots_and_messages_without_words_are_handled(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    fake_discord.dispatch_message("beep", author_id=fake_discord.bot_user_id,
                                  channel_id=fake_discord.general_channel_id)
    sticker = fake_discord.dispatch_message(
        "", mentions_bot=True, channel_id=fake_discord.general_channel_id,
        sticker_items=[{"id": "749054660769218631", "name": "Wave", "format_type": 1}])
    notice = wait_for(lambda: bot_messages(fake_discord, sticker["id"]))
    assert "empty" in notice[-1]["content"]
    assert fake_openai.chat_requests() == []


def test_fifty_questions_in_fifty_threads(server: LiveServer, fake_discord: FakeDiscord,
                                          fake_openai: FakeOpenAI) -> None:
    with ThreadPoolExecutor(10) as pool:
        questions = list(pool.map(
            lambda n: fake_discord.dispatch_message(
                f"question {n}", mentions_bot=True, author_id=str(2000 + n),
                channel_id=fake_discord.general_channel_id), range(50)))
    for number, question in enumerate(questions):
        final_answer(fake_discord, question["id"], f"You said: question {number}", timeout=30)
    assert len(fake_openai.chat_requests()) == 50
    assert len(fake_discord.threads) == 50


def test_feedback_buttons_are_stored_and_acknowledged_privately(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    question = fake_discord.dispatch_message("help me", mentions_bot=True,
                                             channel_id=fake_discord.general_channel_id)
    answer = final_answer(fake_discord, question["id"], "You said: help me")
    buttons = wait_for(lambda: [c for row in fake_discord.messages(question["id"])[-1].get(
        "components") or [] for c in row["components"]])
    down = next(b for b in buttons if b["custom_id"].startswith("bothub:fb:down:"))

    async def stored() -> list[Any]:
        conversation = await server.hub.store.find(ConversationKey(
            "discord", fake_discord.guild_id, fake_discord.general_channel_id, question["id"]))
        assert conversation is not None
        return await server.hub.store.messages(conversation.id)

    click = fake_discord.interaction_button(down["custom_id"], message_id=answer["id"],
                                            channel_id=question["id"])
    fake_discord.dispatch("INTERACTION_CREATE", click)
    [response] = wait_for(lambda: fake_discord.interaction_responses)
    assert "Thanks" in str(response) and "64" in str(response)  # flags: ephemeral

    async def votes() -> list[tuple[str, int]]:
        return await server.hub.store.feedback((await stored())[1].id)

    assert server.run(votes()) == [("1001", -1)]


def test_an_image_reaches_the_model_and_other_files_are_named(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                        "0000000d49444154789c63f8cfc0f01f0005000201c2d2b6a80000000049454e44"
                        "ae426082")
    image = fake_discord.add_attachment("error.png", "image/png", png)
    archive = fake_discord.add_attachment("logs.zip", "application/zip", b"PK\x03\x04")
    question = fake_discord.dispatch_message("what is this?", mentions_bot=True,
                                             attachments=[image, archive],
                                             channel_id=fake_discord.general_channel_id)
    # The answer grows by edits: wait for the finished one, which names the skipped file.
    answer = wait_for(lambda: next((m for m in bot_messages(fake_discord, question["id"])
                                    if "logs.zip" in m["content"]), None))
    assert answer["content"].startswith("You said: what is this?")
    content = fake_openai.chat_requests()[-1]["messages"][-1]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_forum_posts_are_answered_and_unlisted_channels_are_not(
        tmp_path: Path, fake_openai: FakeOpenAI, fake_discord: FakeDiscord) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path, f"discord:\n  listen_channels: "
                                     f"['{fake_discord.forum_channel_id}']\n")
    settings = make_settings(tmp_path, fake_openai, discord_bot_token=fake_discord.bot_token,
                             discord_api_url=fake_discord.api_url, config_file=config)
    with running_server(settings, discord_app):
        wait_for(lambda: fake_discord.events_named("GUILD_CREATE"), timeout=15)
        post = fake_discord.add_thread("Export fails", parent_id=fake_discord.forum_channel_id,
                                       owner_id="1001")
        fake_discord.dispatch_message("my export fails with an error", channel_id=post["id"])
        final_answer(fake_discord, post["id"], "You said: my export fails with an error")
        fake_discord.dispatch_message("hello?", mentions_bot=True,
                                      channel_id=fake_discord.general_channel_id)
        time.sleep(0.4)
        assert len(fake_openai.chat_requests()) == 1


def test_a_sharded_client_connects_and_answers(tmp_path: Path, fake_openai: FakeOpenAI,
                                               fake_discord: FakeDiscord) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path, "discord:\n  sharded: true\n")
    settings = make_settings(tmp_path, fake_openai, discord_bot_token=fake_discord.bot_token,
                             discord_api_url=fake_discord.api_url, config_file=config)
    with running_server(settings, discord_app):
        wait_for(lambda: fake_discord.events_named("GUILD_CREATE"), timeout=15)
        assert fake_discord.calls_to("GET /gateway/bot")
        identify = fake_discord.frames(2)[-1].data
        assert identify["shard"] == [0, 1]
        question = fake_discord.dispatch_message("sharded hello", mentions_bot=True,
                                                 channel_id=fake_discord.general_channel_id)
        final_answer(fake_discord, question["id"], "You said: sharded hello")


def test_a_thread_deleted_mid_answer_loses_the_delivery_not_the_answer(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="This will take a while " * 4, chunk_delay=0.05))
    question = fake_discord.dispatch_message("slow one", mentions_bot=True,
                                             channel_id=fake_discord.general_channel_id)
    wait_for(lambda: bot_messages(fake_discord, question["id"]))
    fake_discord.delete_channel(question["id"])

    async def answer_stored() -> bool:
        conversation = await server.hub.store.find(ConversationKey(
            "discord", fake_discord.guild_id, fake_discord.general_channel_id, question["id"]))
        rows = await server.hub.store.messages(conversation.id) if conversation else []
        return bool(rows) and rows[-1].role == "assistant"

    wait_for(lambda: server.run(answer_stored()))


def test_a_long_answer_continues_in_further_messages(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    long_text = "\n\n".join(f"Step {n}: " + "configure the thing carefully " * 12
                            for n in range(14))
    fake_openai.queue(ScriptedReply(text=long_text))
    question = fake_discord.dispatch_message("walk me through it", mentions_bot=True,
                                             channel_id=fake_discord.general_channel_id)
    def complete() -> list[dict[str, Any]] | None:
        messages = bot_messages(fake_discord, question["id"])
        words = " ".join(m["content"] for m in messages).split()
        return messages if words == long_text.split() else None

    parts = wait_for(complete, timeout=15)
    assert len(parts) > 1 and all(len(m["content"]) <= 2000 for m in parts)


def test_a_message_with_only_an_embed_gets_a_polite_notice(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    question = fake_discord.dispatch_message(
        "", mentions_bot=True, channel_id=fake_discord.general_channel_id,
        embeds=[{"type": "link", "url": "https://example.com", "title": "Example"}])
    notice = wait_for(lambda: bot_messages(fake_discord, question["id"]))
    assert "empty" in notice[-1]["content"] and fake_openai.chat_requests() == []


def test_a_mention_in_someone_elses_thread_is_answered_there(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    thread = fake_discord.add_thread("Team chat", owner_id="1002")
    fake_discord.dispatch_message("no mention, not for the bot", channel_id=thread["id"])
    fake_discord.dispatch_message("can you check this?", mentions_bot=True,
                                  channel_id=thread["id"])
    final_answer(fake_discord, thread["id"], "You said: can you check this?")
    assert len(fake_openai.chat_requests()) == 1


def test_an_answer_cut_short_by_a_dead_worker_is_finished_in_the_same_message(
        server: LiveServer, fake_discord: FakeDiscord, fake_openai: FakeOpenAI) -> None:
    fake_openai.queue(ScriptedReply(text="never finished", delay=30))
    question = fake_discord.dispatch_message("where are my invoices?", mentions_bot=True,
                                             channel_id=fake_discord.general_channel_id)
    thread_id = question["id"]
    wait_for(lambda: bot_messages(fake_discord, thread_id))  # the placeholder is up
    wait_for(lambda: fake_openai.chat_requests())  # and the model is writing

    async def crash_and_take_over() -> None:
        await kill_the_worker(server, "discord")
        await take_over(server)

    fake_openai.queue(ScriptedReply(text="Invoices are under Billing."))
    server.run(crash_and_take_over())
    answer = final_answer(fake_discord, thread_id, "Invoices are under Billing.")
    assert [m["id"] for m in bot_messages(fake_discord, thread_id)] == [answer["id"]]
