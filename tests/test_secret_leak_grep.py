"""The secret-leak grep: after conversations full of pasted secrets, bothub's own configured
secrets repeated by the model, and a model failure, no secret is found in the database (every
table, every column), in the log (DEBUG, every SDK logger) or in what was sent to the model."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import select

from bot.app import Hub
from bot.store.tables import Base
from tests.conftest import make_settings, question
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.fakes.recording_channel import RecordingChannel
from tests.test_log_secrets import SECRETS, captured_log

# Built from pieces so that secret scanners do not flag this repository.
PASTED = {
    "openai": "sk-proj-" + "Pasted9Key8From7A6User5Zz4Yy3Xx2",
    "aws": "AKIA" + "IOSFODNN7EXAMPLQ",
    "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "slack": "xoxp-" + "1111111111-2222222222-3333333333-abcdefabcdefabcdefabcdefabcdefab",
    "stripe": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc00aa11bb",
    "jwt": "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           + "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
    "card": "4111 1111 " + "1111 1111",
    "password": "Tr0ub4dor" + "&3-horse",
}
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" + "VJTUt9Us8cKj"
CONFIGURED = [SECRETS["slack_client_secret"], SECRETS["microsoft_app_password"],
              SECRETS["slack_bot_token"]]
EVERY = [*PASTED.values(), PEM_BODY, *CONFIGURED]


async def test_no_secret_in_the_database_the_log_or_the_model_requests(
        tmp_path: Path, fake_openai: FakeOpenAI, database_url: str) -> None:
    settings = make_settings(tmp_path, fake_openai, log_level="DEBUG", database_url=database_url,
                             **{**SECRETS, "slack_client_id": "1234.5678",
                                "microsoft_app_id": "app-id"})
    with captured_log(settings) as log:
        hub = await Hub.create(settings)
        try:
            fake_openai.queue(
                ScriptedReply(text=f"Use {PASTED['openai']} with password "
                                   f"{SECRETS['slack_client_secret']}."),
                ScriptedReply(text=f"Your card {PASTED['card']} and {PASTED['aws']} are fine."))
            await hub.engine.handle(question(
                f"my keys: {PASTED['openai']} {PASTED['aws']} {PASTED['github']} "
                f"{PASTED['slack']} {PASTED['stripe']} token {PASTED['jwt']}", thread="a"),
                RecordingChannel())
            await hub.engine.handle(question(
                f"password: {PASTED['password']} card {PASTED['card']}\n"
                f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n"
                f"and our app password {SECRETS['microsoft_app_password']}", thread="b"),
                RecordingChannel())
            fake_openai.fail_next(9, status=500)
            await hub.engine.handle(question(f"again {PASTED['openai']} "
                                             f"{SECRETS['slack_bot_token']}", thread="c"),
                                    RecordingChannel())
            async with hub.database.connect() as connection:
                dump = []
                for table in Base.metadata.sorted_tables:
                    rows = (await connection.execute(select(table))).all()
                    dump.extend(repr(tuple(row)) for row in rows)
        finally:
            await hub.close()
    database = "\n".join(dump)
    requests = json.dumps([[r.path, r.json, r.form] for r in fake_openai.requests], default=str)
    logged = log.getvalue()
    found = {name: [s for s in EVERY if s in text]
             for name, text in (("database", database), ("log", logged),
                                ("model_requests", requests))}
    assert found == {"database": [], "log": [], "model_requests": []}
    assert "[redacted" in database and "[redacted" in requests  # the messages did get there
    figures = {"secrets_planted": len(EVERY), "database_bytes": len(database),
               "log_bytes": len(logged), "model_request_bytes": len(requests),
               "found": {name: len(hits) for name, hits in found.items()}}
    _write_figures(f"secret_leak_{database_url.split(':')[0]}.json", figures)


def _write_figures(name: str, figures: dict[str, object]) -> None:
    """The closing note's figures, beside the other test artifacts."""
    artifacts = Path(os.environ.get("BOTHUB_TEST_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / name).write_text(json.dumps(figures, indent=2))
