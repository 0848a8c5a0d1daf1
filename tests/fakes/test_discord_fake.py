"""The fake Discord, driven by the real discord.py client (and, for the gateway protocol's
corners, by a bare aiohttp websocket).

These pin down the wire behaviour the Discord adapter's tests rely on: how discord.py logs in
and connects, what it does with a 429 and with a dropped gateway, and that the fake's payloads
parse into the objects the bot sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import discord
import pytest

from tests.fakes.discord_server import (
    BOT_USER_ID,
    DiscordCall,
    FakeDiscord,
    Intents,
)

SEND = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
THREAD_FROM_MESSAGE = "POST /channels/{channel_id}/messages/{message_id}/threads"
CALLBACK = "POST /interactions/{interaction_id}/{interaction_token}/callback"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeDiscord]:
    """One server per module: starting a thread and a socket per test would be wasted time."""
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeDiscord) -> Iterator[FakeDiscord]:
    """The shared server, reset so no message, session or script leaks between tests."""
    server.reset()
    yield server
    server.reset()


async def eventually(condition: Callable[[], Any]) -> Any:
    """Poll `condition` for up to 2 s (the client runs on this loop, so never block)."""
    deadline = time.monotonic() + 2.0
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
    return result


class Bot(discord.Client):
    """A discord.py client that records what it receives."""

    def __init__(self, *, message_content: bool = True) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        # on_ready waits guild_ready_timeout after the last GUILD_CREATE (2 s by default)
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.ready_event = asyncio.Event()
        self.received: list[discord.Message] = []
        self.interactions: list[discord.Interaction] = []
        self.resumed_count = 0
        self.on_interaction_hook: Callable[[discord.Interaction], Any] | None = None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py's default sleeps 5 s before every IDENTIFY but the first (Discord's
        identify rate limit); a test that makes it IDENTIFY again cannot wait that long."""

    async def on_ready(self) -> None:
        self.ready_event.set()

    async def on_resumed(self) -> None:
        self.resumed_count += 1

    async def on_message(self, message: discord.Message) -> None:
        self.received.append(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.interactions.append(interaction)
        if self.on_interaction_hook is not None:
            await self.on_interaction_hook(interaction)

    def from_users(self) -> list[discord.Message]:
        """Received messages not written by the bot itself (the fake echoes the bot's own)."""
        return [m for m in self.received if self.user is None or m.author.id != self.user.id]


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, *, message_content: bool = True) -> AsyncIterator[Bot]:
    """A connected, ready client; closed (and its task awaited) on exit."""
    bot = Bot(message_content=message_content)
    with fake.patch_discord_py():
        task = asyncio.create_task(bot.start(fake.bot_token))
        try:
            ready = asyncio.create_task(bot.ready_event.wait())
            done, _ = await asyncio.wait(
                {task, ready}, timeout=2.0, return_when=asyncio.FIRST_COMPLETED
            )
            if ready not in done:
                ready.cancel()
                if task in done:
                    task.result()  # raises what made the client stop
                raise AssertionError("on_ready did not fire in time")
            yield bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, 2.0)


async def user_message(
    fake: FakeDiscord, bot: Bot, content: str, **options: Any
) -> discord.Message:
    """Dispatch a message from a user and return it as on_message received it."""
    payload = fake.dispatch_message(content, **options)
    return await eventually(
        lambda: next((m for m in bot.received if m.id == int(payload["id"])), None)
    )


def statuses(calls: list[DiscordCall]) -> list[int]:
    return [call.status for call in calls]


# -- login and gateway ---------------------------------------------------------------------


async def test_login_identify_and_ready(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        assert bot.user is not None
        assert str(bot.user.id) == BOT_USER_ID
        assert bot.user.name == "bothub"
        assert bot.user.bot
        assert bot.application_id == int(fake.application_id)
        guild = bot.get_guild(int(fake.guild_id))
        assert guild is not None
        general = guild.get_channel(int(fake.general_channel_id))
        assert isinstance(general, discord.TextChannel)
        assert isinstance(guild.get_channel(int(fake.forum_channel_id)), discord.ForumChannel)
        assert guild.me is not None

        # A plain Client logs in with these two and never asks for /gateway/bot.
        assert [c.route_key for c in fake.calls] == [
            "GET /users/@me",
            "GET /oauth2/applications/@me",
        ]
        assert fake.calls[0].headers["authorization"] == f"Bot {fake.bot_token}"
        [connection] = fake.gateway_connections
        assert connection["query"] == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
        assert connection["transport"] == "zlib-stream"
        [identify] = fake.frames(2)
        assert identify.data["token"] == fake.bot_token
        assert identify.data["intents"] & Intents.MESSAGE_CONTENT
        assert fake.frames(1), "discord.py heartbeats right after HELLO"
        assert fake.identify_count == 1
        assert [e.name for e in fake.events] == ["READY", "GUILD_CREATE"]
        assert [e.seq for e in fake.events] == [1, 2]
    # Client.close() asks for 1000, but its own poll loop usually wins the race and closes
    # with 4000 first: to Discord (and the fake) the session then stays resumable.
    assert await eventually(lambda: fake.gateway_connections[0]["close_code"]) in (1000, 4000)


async def test_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default())
    with fake.patch_discord_py():
        try:
            with pytest.raises(discord.LoginFailure):
                await client.login("not-the-token")
        finally:
            await client.close()
    assert statuses(fake.calls) == [401]


async def test_patch_discord_py_restores_the_defaults(fake: FakeDiscord) -> None:
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    with fake.patch_discord_py():
        assert fake.api_url == discord.http.Route.BASE
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
    assert base == discord.http.Route.BASE
    assert gateway == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


# -- messages ------------------------------------------------------------------------------


async def test_message_create_reaches_on_message(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        message = await user_message(
            fake, bot, "how do I reset my password?", channel_id=fake.general_channel_id
        )
        assert message.content == "how do I reset my password?"
        assert message.author.id == 1001
        assert message.author.name == "alice"
        assert message.author.display_name == "Alice"
        assert not message.author.bot
        assert isinstance(message.author, discord.Member)
        assert message.guild is not None and message.guild.id == int(fake.guild_id)
        assert message.channel.id == int(fake.general_channel_id)
        assert bot.user not in message.mentions

        mention = await user_message(fake, bot, "help", mentions_bot=True)
        assert mention.content == f"<@{BOT_USER_ID}> help"
        assert bot.user in mention.mentions


async def test_without_message_content_intent_only_mentions_carry_content(
    fake: FakeDiscord,
) -> None:
    async with running(fake, message_content=False) as bot:
        plain = await user_message(fake, bot, "secret words")
        assert plain.content == ""
        mention = await user_message(fake, bot, "hello bot", mentions_bot=True)
        assert mention.content == f"<@{BOT_USER_ID}> hello bot"
        dm = fake.open_dm("1002")
        direct = await user_message(fake, bot, "in private", channel_id=dm["id"], author_id="1002")
        assert direct.content == "in private"
        assert direct.guild is None
        assert isinstance(direct.channel, discord.DMChannel)


async def test_send_and_edit_land_in_the_fake(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        question = await user_message(fake, bot, "ping")
        sent = await question.channel.send("pong")
        assert sent.author == bot.user
        edited = await sent.edit(content="pong (edited)")
        assert edited.content == "pong (edited)"
        reply = await question.reply("a reply", mention_author=False)

        bot_messages = fake.messages(fake.general_channel_id, author_id=BOT_USER_ID)
        assert [m["content"] for m in bot_messages] == ["pong (edited)", "a reply"]
        assert bot_messages[0]["edited_timestamp"] is not None
        assert [v["content"] for v in fake.edit_history(str(sent.id))] == ["pong"]
        assert bot_messages[1]["message_reference"]["message_id"] == str(question.id)
        [reply_call] = [c for c in fake.calls_to(SEND) if c.json.get("message_reference")]
        assert reply_call.json["allowed_mentions"]["replied_user"] is False
        assert bot_messages[1]["mentions"] == []  # the author was not pinged
        assert reply.reference is not None and reply.reference.message_id == question.id
        # The bot sees its own messages on the gateway too, as on Discord.
        await eventually(lambda: any(m.id == reply.id for m in bot.received))


async def test_content_over_2000_characters_is_invalid_form_body(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        channel = bot.get_channel(int(fake.general_channel_id))
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.send("x" * 2001)
        assert excinfo.value.status == 400
        assert excinfo.value.code == 50035
        assert "Must be 2000 or fewer in length." in excinfo.value.text
        await channel.send("x" * 2000)
        assert len(fake.messages(fake.general_channel_id)[-1]["content"]) == 2000


async def test_deleted_channel_is_unknown_channel(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        channel = bot.get_channel(int(fake.general_channel_id))
        assert isinstance(channel, discord.TextChannel)
        fake.delete_channel(fake.general_channel_id)
        with pytest.raises(discord.NotFound) as excinfo:
            await channel.send("anyone there?")
        assert excinfo.value.code == 10003


async def test_reactions_and_unknown_emoji(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        message = await user_message(fake, bot, "thanks!")
        await message.add_reaction("👍")
        [stored] = [m for m in fake.messages(fake.general_channel_id) if m["id"] == str(message.id)]
        assert stored["reactions"][0]["emoji"] == {"id": None, "name": "👍"}
        assert stored["reactions"][0]["me"] is True
        with pytest.raises(discord.HTTPException) as excinfo:
            await message.add_reaction(":thumbsup:")
        assert excinfo.value.code == 10014


async def test_attachments_are_served_by_the_fake(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        attachment = fake.add_attachment("notes.txt", "text/plain", b"line one\n")
        message = await user_message(fake, bot, "see file", attachments=[attachment])
        [received] = message.attachments
        assert received.filename == "notes.txt"
        assert received.content_type == "text/plain"
        assert await received.read() == b"line one\n"

        sent = await message.channel.send("here", file=discord.File(io.BytesIO(b"%PDF"), "out.pdf"))
        [uploaded] = sent.attachments
        assert uploaded.filename == "out.pdf"
        assert await uploaded.read() == b"%PDF"


# -- roles and permissions -----------------------------------------------------------------


async def test_roles_and_channel_overwrites_reach_discord_py(fake: FakeDiscord) -> None:
    view = str(1 << 10)  # VIEW_CHANNEL
    fake.add_user("1003", "grace", "Grace")
    role = fake.add_role("Support", members=["1003"])
    private = fake.add_channel(
        "support-agents",
        permission_overwrites=[
            {"id": fake.guild_id, "type": 0, "deny": view},  # @everyone
            {"id": role["id"], "type": 0, "allow": view},
        ],
    )
    async with running(fake) as bot:
        guild = bot.get_guild(int(fake.guild_id))
        assert guild is not None and guild.get_role(int(role["id"])) is not None
        channel = guild.get_channel(int(private["id"]))
        assert isinstance(channel, discord.TextChannel)
        grace = await guild.fetch_member(1003)
        bob = await guild.fetch_member(int("1002"))
        assert [r.id for r in grace.roles if not r.is_default()] == [int(role["id"])]
        assert channel.permissions_for(grace).view_channel
        assert not channel.permissions_for(bob).view_channel

        later = fake.add_role("Later")  # a live session hears of a new role
        await eventually(lambda: guild.get_role(int(later["id"])) is not None)


# -- threads -------------------------------------------------------------------------------


async def test_create_thread_from_a_message(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        question = await user_message(fake, bot, "long question", mentions_bot=True)
        thread = await question.create_thread(name="Support: long question")
        assert thread.id == question.id
        assert thread.type is discord.ChannelType.public_thread
        assert fake.threads[str(question.id)]["name"] == "Support: long question"
        await eventually(lambda: bot.get_channel(thread.id) is not None)  # THREAD_CREATE
        await thread.send("answer in the thread")
        assert [m["content"] for m in fake.messages(str(thread.id))] == ["answer in the thread"]

        in_thread = await user_message(fake, bot, "follow-up", channel_id=str(thread.id))
        assert isinstance(in_thread.channel, discord.Thread)
        assert in_thread.channel.parent_id == int(fake.general_channel_id)


async def test_create_thread_forbidden(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        question = await user_message(fake, bot, "question")
        fake.fail(THREAD_FROM_MESSAGE, 403, 50013, "Missing Permissions")
        with pytest.raises(discord.Forbidden) as excinfo:
            await question.create_thread(name="nope")
        assert excinfo.value.code == 50013
        assert statuses(fake.calls_to(THREAD_FROM_MESSAGE)) == [403]
        assert fake.threads == {}


async def test_archived_and_locked_threads_refuse_posts(fake: FakeDiscord) -> None:
    archived = fake.add_thread("old", archived=True)
    locked = fake.add_thread("closed", locked=True)
    async with running(fake) as bot:
        assert bot.get_channel(int(archived["id"])) is None  # archived: not in GUILD_CREATE
        channel = await bot.fetch_channel(int(archived["id"]))
        assert isinstance(channel, discord.Thread) and channel.archived
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.send("hello?")
        assert (excinfo.value.status, excinfo.value.code) == (400, 50083)
        thread = bot.get_channel(int(locked["id"]))
        assert isinstance(thread, discord.Thread) and thread.locked
        with pytest.raises(discord.Forbidden) as forbidden:
            await thread.send("hello?")
        assert forbidden.value.code == 160005


async def test_forum_post(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        forum = bot.get_channel(int(fake.forum_channel_id))
        assert isinstance(forum, discord.ForumChannel)
        created = await forum.create_thread(name="How to X", content="Steps...")
        assert created.thread.id == created.message.id
        assert created.message.content == "Steps..."
        assert fake.messages(str(created.thread.id))[0]["content"] == "Steps..."


# -- rate limits and failures --------------------------------------------------------------


async def test_a_429_is_retried_by_discord_py(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        channel = bot.get_channel(int(fake.general_channel_id))
        assert isinstance(channel, discord.TextChannel)
        fake.rate_limit(SEND, retry_after=0.05)
        started = time.monotonic()
        message = await channel.send("eventually")
        assert time.monotonic() - started >= 0.05
        assert message.content == "eventually"
        assert statuses(fake.calls_to(SEND)) == [429, 200]
        assert fake.messages(fake.general_channel_id)[-1]["content"] == "eventually"


async def test_a_scripted_503_is_raised_at_once(fake: FakeDiscord) -> None:
    """discord.py retries 500/502/504/524 after 1, 3, 5... s; 503 is raised at once."""
    async with running(fake) as bot:
        channel = bot.get_channel(int(fake.general_channel_id))
        assert isinstance(channel, discord.TextChannel)
        fake.fail(SEND, 503, 0, "upstream connect error")
        with pytest.raises(discord.DiscordServerError) as excinfo:
            await channel.send("now?")
        assert excinfo.value.status == 503
        assert statuses(fake.calls_to(SEND)) == [503]


# -- gateway resume --------------------------------------------------------------------------


async def test_dropped_gateway_resumes_and_replays_missed_events(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        before = await user_message(fake, bot, "before the drop")
        seq_before = fake.events[-1].seq
        session_id = fake.session_id

        fake.drop_gateway()
        # Dispatched before the client can even notice (it runs on this loop): queued in the
        # session and replayed on RESUME.
        missed = fake.dispatch_message("while you were away")
        message = await eventually(
            lambda: next((m for m in bot.received if m.id == int(missed["id"])), None)
        )
        assert message.content == "while you were away"
        await eventually(lambda: bot.resumed_count == 1)
        after = await user_message(fake, bot, "after the resume")

        assert fake.resume_count == 1
        assert fake.identify_count == 1
        [resume] = fake.frames(6)
        assert resume.data["session_id"] == session_id
        assert resume.data["seq"] == seq_before
        assert resume.connection == 2
        ids = [m.id for m in bot.from_users()]
        assert ids == [before.id, int(missed["id"]), after.id]  # each exactly once


async def test_invalid_session_makes_discord_py_identify_again(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        first_session = fake.session_id
        fake.invalidate_session()
        await eventually(lambda: fake.identify_count == 2)
        await eventually(lambda: fake.connected == 1)
        assert fake.session_id != first_session
        message = await user_message(fake, bot, "new session")
        assert message.content == "new session"


async def test_resume_with_an_unknown_session_is_invalid_session(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(fake.gateway_url) as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10
        token = fake.bot_token
        await ws.send_json({"op": 6, "d": {"token": token, "session_id": "nope", "seq": 3}})
        answer = await ws.receive_json()
        assert answer == {"op": 9, "d": False, "s": None, "t": None}
    assert fake.invalid_sessions == 1


async def test_raw_gateway_zlib_stream_and_replay(fake: FakeDiscord) -> None:
    """The protocol without discord.py: zlib-stream frames, sequence numbers, RESUME replay."""
    url = f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream"
    identify = {"op": 2, "d": {"token": fake.bot_token, "intents": 1 | (1 << 9) | (1 << 15)}}

    async def frames(ws: aiohttp.ClientWebSocketResponse, inflate: Any) -> Any:
        message = await ws.receive()
        assert message.type is aiohttp.WSMsgType.BINARY
        assert message.data.endswith(b"\x00\x00\xff\xff")
        return json.loads(inflate.decompress(message.data))

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            inflate = zlib.decompressobj()
            assert (await frames(ws, inflate))["op"] == 10
            await ws.send_json({"op": 1, "d": None})
            assert (await frames(ws, inflate))["op"] == 11
            await ws.send_json(identify)
            ready = await frames(ws, inflate)
            assert (ready["t"], ready["s"]) == ("READY", 1)
            assert ready["d"]["resume_gateway_url"] == fake.gateway_url
            assert ready["d"]["guilds"] == [{"id": fake.guild_id, "unavailable": True}]
            guild = await frames(ws, inflate)
            assert (guild["t"], guild["s"]) == ("GUILD_CREATE", 2)
            assert {c["name"] for c in guild["d"]["channels"]} == {"general", "help"}
            first = fake.dispatch_message("one")
            assert (await frames(ws, inflate))["d"]["id"] == first["id"]
            await ws.close(code=4000)  # not 1000/1001: the session stays resumable
        await eventually(lambda: fake.connected == 0)
        missed = fake.dispatch_message("two")
        assert fake.events[-1].seq == 4
        resume = {"token": fake.bot_token, "session_id": ready["d"]["session_id"], "seq": 2}
        async with session.ws_connect(fake.gateway_url) as ws:  # no compression asked: text
            assert (await ws.receive_json())["op"] == 10
            await ws.send_json({"op": 6, "d": resume})
            replayed = [await ws.receive_json() for _ in range(3)]
            assert [(f["t"], f["s"]) for f in replayed] == [
                ("MESSAGE_CREATE", 3),
                ("MESSAGE_CREATE", 4),
                ("RESUMED", 5),
            ]
            assert replayed[1]["d"]["id"] == missed["id"]
            await ws.close()
    assert fake.resume_count == 1


async def test_privileged_intent_not_enabled_closes_4014(fake: FakeDiscord) -> None:
    fake.privileged_intents = 0
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running(fake):
            pass


# -- interactions --------------------------------------------------------------------------


async def test_button_interaction_and_callback(fake: FakeDiscord) -> None:
    async with running(fake) as bot:

        async def answer(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("Thanks for the feedback", ephemeral=True)

        bot.on_interaction_hook = answer
        channel = bot.get_channel(int(fake.general_channel_id))
        assert isinstance(channel, discord.TextChannel)
        view = discord.ui.View()
        view.add_item(discord.ui.Button(label="Helpful", custom_id="feedback:up"))
        sent = await channel.send("Here is the answer", view=view)
        [send_call] = fake.calls_to(SEND)
        assert send_call.json["components"][0]["components"][0]["custom_id"] == "feedback:up"

        payload = fake.interaction_button("feedback:up", message_id=str(sent.id))
        fake.dispatch("INTERACTION_CREATE", payload)
        await eventually(lambda: fake.interaction_responses)
        [interaction] = bot.interactions
        assert interaction.data is not None
        assert interaction.data.get("custom_id") == "feedback:up"
        assert interaction.user.id == 1001
        [response] = fake.interaction_responses
        assert response["type"] == 4
        assert response["data"]["content"] == "Thanks for the feedback"
        assert response["data"]["flags"] & 64
        [callback] = fake.calls_to(CALLBACK)
        assert callback.query == {"with_response": "1"}
        # ephemeral: not part of the channel as others see it
        assert [m["content"] for m in fake.messages(fake.general_channel_id)] == [
            "Here is the answer"
        ]
