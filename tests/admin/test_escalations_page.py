"""The escalation queue in the dashboard, over HTTP against a live bothub, on SQLite and
PostgreSQL: what an admin sees, and that Claim / Release / Resolve go through the desk exactly
as a platform's buttons do (the user is told, the human channel's post is updated, the events
say who)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bot.escalation.store import State
from tests.admin.world import (
    TOKEN,
    AdminWorld,
    admin_world,
    csrf_of,
    notice_of,
    signed_in,
    text_of,
)
from tests.fakes.openai_server import FakeOpenAI

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def world(tmp_path: Path, fake_openai: FakeOpenAI, database_url: str) -> Iterator[AdminWorld]:
    with admin_world(tmp_path, fake_openai, database_url=database_url) as built:
        yield built


@pytest.fixture
def ada(world: AdminWorld) -> Iterator[httpx.Client]:
    with signed_in(world, "Ada Lovelace") as client:
        yield client


def act(client: httpx.Client, number: int, action: str, *, csrf: str | None = None,
        back: str = "/admin/escalations") -> httpx.Response:
    """Press a button on the queue page: POST, then follow the redirect like a browser."""
    page = client.get("/admin/escalations").text
    data = {"csrf_token": csrf if csrf is not None else csrf_of(page), "next": back}
    return client.post(f"/admin/escalations/{number}/{action}", data=data,
                       follow_redirects=True)


def test_the_queue_shows_who_waits_for_what(world: AdminWorld, ada: httpx.Client) -> None:
    number = world.escalate(user="Alice")
    page = ada.get("/admin/escalations")
    assert page.status_code == 200
    text = text_of(page.text)
    assert f"#{number}" in text and "open" in text and "asked for a person" in text
    assert "Alice" in text and "slack C0GENERAL" in text
    assert "Signed in as Ada Lovelace" in text
    assert f'action="/admin/escalations/{number}/claim"' in page.text
    assert "Open & claimed (1)" in text and "Resolved (0)" in text


def test_claim_from_the_dashboard_goes_through_the_desk(world: AdminWorld,
                                                       ada: httpx.Client) -> None:
    number = world.escalate()
    shown = act(ada, number, "claim")
    assert shown.status_code == 200 and str(shown.url.path) == "/admin/escalations"
    assert notice_of(shown.text) == (f"ok: You've claimed escalation #{number}. "
                                     "I'll stay quiet in that thread.")
    row = text_of(shown.text)
    assert "claimed" in row and "Ada Lovelace" in row
    ticket = world.ticket(number)
    assert ticket.state is State.CLAIMED and ticket.claimed_by_name == "Ada Lovelace"
    # The user hears it, and the post in the human channel is brought up to date.
    assert world.outlet.told[-1][1] == ("Ada Lovelace from our support team has joined and "
                                        "will take it from here.")
    assert (number, State.CLAIMED) in world.outlet.updated
    claimed = [e for e in world.events(number) if e["action"] == "claimed"]
    assert [(e["actor_name"], e["platform"]) for e in claimed] == [("Ada Lovelace", "admin")]
    # A reload shows no notice again only if the URL is fresh: the notice rides on the URL.
    assert notice_of(ada.get("/admin/escalations").text) is None


def test_a_second_admin_cannot_claim_what_the_first_did(world: AdminWorld,
                                                       ada: httpx.Client) -> None:
    number = world.escalate()
    with signed_in(world, "Bob") as bob:
        page_for_bob = bob.get("/admin/escalations").text  # Bob loads the queue first
        assert act(ada, number, "claim").status_code == 200
        told = len(world.outlet.told)
        late = bob.post(f"/admin/escalations/{number}/claim",
                        data={"csrf_token": csrf_of(page_for_bob)}, follow_redirects=True)
        assert late.status_code == 200
        assert notice_of(late.text) == (f"warn: Escalation #{number} is already claimed by "
                                        "Ada Lovelace.")
        assert str(late.url.path) == f"/admin/escalations/{number}"
    assert world.ticket(number).claimed_by_name == "Ada Lovelace"
    assert len(world.outlet.told) == told  # the user is not told twice


def test_release_then_resolve_and_save_to_the_knowledge_base(world: AdminWorld,
                                                            ada: httpx.Client) -> None:
    number = world.escalate()
    act(ada, number, "claim")
    released = act(ada, number, "release")
    assert notice_of(released.text) == f"ok: Escalation #{number} is back in the queue."
    assert world.ticket(number).state is State.OPEN
    act(ada, number, "claim")
    detail = f"/admin/escalations/{number}"
    resolved = act(ada, number, "resolve-save", back=detail)
    assert str(resolved.url.path) == detail
    assert notice_of(resolved.text) == (f"ok: Escalation #{number} is resolved and will be "
                                        "added to the knowledge base.")
    assert world.ticket(number).state is State.RESOLVED
    assert world.outlet.told[-1][1].startswith("Our support team has marked this conversation "
                                               "as resolved.")
    history = text_of(resolved.text)
    for line in ("Opened by Alice via slack", "Claimed by Ada Lovelace via admin",
                 "Released by Ada Lovelace via admin",
                 "Resolved by Ada Lovelace via admin · saved to the knowledge base"):
        assert line in history
    # Gone from the queue, listed under Resolved, newest first.
    assert f"#{number}" not in text_of(ada.get("/admin/escalations").text)
    listed = text_of(ada.get("/admin/escalations?state=resolved").text)
    assert f"#{number}" in listed and "resolved" in listed
    again = act(ada, number, "resolve", back=detail)
    assert notice_of(again.text) == f"warn: Escalation #{number} is already resolved."


def test_the_detail_page_shows_the_conversation_and_its_history(world: AdminWorld,
                                                              ada: httpx.Client) -> None:
    number = world.escalate(text="I want to talk to a human about my invoice")
    page = ada.get(f"/admin/escalations/{number}")
    assert page.status_code == 200
    text = text_of(page.text)
    assert f"Escalation #{number}" in text
    assert "I want to talk to a human about my invoice" in text  # the transcript
    assert "Posted to the human channel" in text and "slack: C0AGENTS" in text
    conversation = world.ticket(number).conversation_id
    assert f'href="/admin/conversations/{conversation}"' in page.text
    for action in ("claim", "resolve"):
        assert f'action="/admin/escalations/{number}/{action}"' in page.text


@pytest.mark.parametrize("path", ["/admin/escalations/abc", "/admin/escalations/0",
                                  "/admin/escalations/-3", "/admin/escalations/999999",
                                  "/admin/escalations/" + "9" * 40,
                                  "/admin/escalations/%C2%B2"])
def test_an_unknown_or_malformed_escalation_is_a_clear_404(ada: httpx.Client,
                                                          path: str) -> None:
    page = ada.get(path)
    assert page.status_code == 404 and "Escalation not found" in page.text
    assert "There is no escalation #" in text_of(page.text)
    assert "Traceback" not in page.text and "Signed in as" in text_of(page.text)


def test_actions_refuse_bad_input_without_touching_anything(world: AdminWorld,
                                                           ada: httpx.Client) -> None:
    number = world.escalate()
    csrf = csrf_of(ada.get("/admin/escalations").text)
    missing = ada.post(f"/admin/escalations/{number}/claim", data={})
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = ada.post(f"/admin/escalations/{number}/claim", data={"csrf_token": csrf + "x"})
    assert wrong.status_code == 403
    unknown = ada.post(f"/admin/escalations/{number}/explode", data={"csrf_token": csrf},
                       follow_redirects=True)
    assert notice_of(unknown.text) == "bad: There is no action 'explode'."
    nobody = ada.post("/admin/escalations/424242/claim", data={"csrf_token": csrf},
                      follow_redirects=True)
    assert notice_of(nobody.text) == "bad: There is no escalation #424242."
    junk = ada.post("/admin/escalations/x1/claim", data={"csrf_token": csrf},
                    follow_redirects=True)
    assert notice_of(junk.text) == "bad: There is no such escalation."
    # `next` may only lead to our own pages.
    away = ada.post(f"/admin/escalations/{number}/claim",
                    data={"csrf_token": csrf, "next": "https://evil.example/"})
    assert away.status_code == 303
    assert away.headers["location"].startswith(f"/admin/escalations/{number}?notice=")
    assert world.ticket(number).state is State.CLAIMED  # the one valid request did it
    assert len([e for e in world.events(number) if e["action"] == "claimed"]) == 1


def test_a_forged_notice_is_not_shown(ada: httpx.Client) -> None:
    page = ada.get("/admin/escalations", params={"notice": "Your token expired, paste it at "
                                                 "evil.example", "tone": "bad", "sig": "AAAA"})
    assert page.status_code == 200 and notice_of(page.text) is None
    assert "evil.example" not in page.text


def test_the_json_api_lists_and_acts_with_a_bearer_token(world: AdminWorld) -> None:
    number = world.escalate(user="Alice")
    with httpx.Client(base_url=world.url, headers=BEARER, timeout=30) as script:
        listed = script.get("/admin/api/escalations").json()
        [one] = listed["escalations"]
        assert one["id"] == number and one["state"] == "open" and one["user"]["name"] == "Alice"
        claimed = script.post(f"/admin/api/escalations/{number}/claim")
        assert claimed.status_code == 200 and claimed.json()["ok"] is True
        twice = script.post(f"/admin/api/escalations/{number}/claim")
        assert twice.status_code == 409 and twice.json() == {
            "ok": False, "message": f"Escalation #{number} is already claimed by "
                                    "admin (API token)."}
        detail = script.get(f"/admin/api/escalations/{number}").json()
        assert detail["claimed_by"] == "admin (API token)"
        assert [e["action"] for e in detail["events"]][-1] == "claimed"
        assert script.get("/admin/api/escalations/nope").status_code == 404
        assert script.post("/admin/api/escalations/77777/claim").status_code == 404
        assert script.get("/admin/api/escalations?state=claimed").json()["escalations"]
        assert script.get("/admin/api/escalations?state=bogus").json()["state"] == "active"
    with httpx.Client(base_url=world.url, timeout=30) as anonymous:
        refused = anonymous.post(f"/admin/api/escalations/{number}/resolve")
        assert refused.status_code == 401
    assert world.ticket(number).state is State.CLAIMED


def test_two_admins_claiming_at_once_get_one_winner(world: AdminWorld) -> None:
    number = world.escalate()
    with signed_in(world, "Ada") as ada, signed_in(world, "Bob") as bob:
        forms = [(client, csrf_of(client.get("/admin/escalations").text))
                 for client in (ada, bob)]
        with ThreadPoolExecutor(2) as pool:
            pages = list(pool.map(lambda pair: pair[0].post(
                f"/admin/escalations/{number}/claim", data={"csrf_token": pair[1]},
                follow_redirects=True), forms))
    notices = sorted(notice_of(page.text) or "" for page in pages)
    winner = world.ticket(number).claimed_by_name
    assert winner in ("Ada", "Bob")
    assert notices == sorted([f"ok: You've claimed escalation #{number}. I'll stay quiet in "
                              "that thread.",
                              f"warn: Escalation #{number} is already claimed by {winner}."])
    assert len([e for e in world.events(number) if e["action"] == "claimed"]) == 1
    joined = [text for _key, text in world.outlet.told if "has joined" in text]
    assert joined == [f"{winner} from our support team has joined and will take it from here."]


def test_names_from_users_and_admins_are_shown_as_text(world: AdminWorld) -> None:
    number = world.escalate(user="<img src=x onerror=alert(1)>")
    with signed_in(world, "<script>alert(2)</script>") as admin:
        act(admin, number, "claim")
        for path in ("/admin/escalations", f"/admin/escalations/{number}"):
            page = admin.get(path).text
            assert "<img src=x" not in page and "<script>alert" not in page, path
            assert "&lt;img src=x onerror=alert(1)&gt;" in page, path
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in admin.get("/admin/escalations").text
