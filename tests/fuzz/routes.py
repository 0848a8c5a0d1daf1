"""The routes an app serves, read from `app.routes`, and which fuzz test targets each.

A route added later (the /admin area, a new adapter) is fuzzed at once by the generic fuzz in
`test_routes.py`, and `test_every_route_has_a_dedicated_fuzz` fails until a strategy made for
it is listed in DEDICATED below (or the route is allow-listed, with the reason).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route, WebSocketRoute

# Starlette adds HEAD to every GET route by itself; it is fuzzed with the GET.
IMPLICIT_METHODS = {"HEAD"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the template, e.g. /static/{name}
    kind: str  # "route", "mount" or "websocket"


def _flat_routes(app: FastAPI) -> list[Any]:
    """Every route with its full path: FastAPI keeps an included router as one entry of
    `app.routes` and resolves its routes (with the include's prefix) through
    `iter_route_contexts`."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(contexts(app.routes)) if contexts is not None else list(app.routes)


def endpoints(app: FastAPI) -> list[Endpoint]:
    found: list[Endpoint] = []
    for route in _flat_routes(app):
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", None)
        if isinstance(original, (APIRoute, Route)) and path is not None:
            methods = sorted((route.methods or {"GET"}) - IMPLICIT_METHODS) or ["GET"]
            found.extend(Endpoint(m, path, "route") for m in methods)
        elif isinstance(original, Mount) and path is not None:
            found.append(Endpoint("GET", path.rstrip("/") + "/{path:path}", "mount"))
        elif isinstance(original, WebSocketRoute) and path is not None:
            found.append(Endpoint("GET", path, "websocket"))
        else:  # an unknown kind of route is fuzzed as a GET of its path, and must be listed
            found.append(Endpoint("GET", str(path or repr(original)), type(original).__name__))
    return found


PARAMETER = re.compile(r"\{(?P<name>[^}:]+)(?::(?P<converter>[^}]+))?\}")


def parameters(template: str) -> list[tuple[str, str]]:
    return [(m["name"], m["converter"] or "str") for m in PARAMETER.finditer(template)]


def fill(template: str, values: dict[str, str]) -> str:
    return PARAMETER.sub(lambda m: values[m["name"]], template)


# (method, path) -> the fuzz tests made for that route ("module::function").
DEDICATED: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/"): ("test_web::test_page_metrics_and_health_take_junk",
                   "test_web::test_methods_not_allowed_anywhere"),
    ("GET", "/healthz"): ("test_web::test_page_metrics_and_health_take_junk",),
    ("GET", "/metrics"): ("test_web::test_page_metrics_and_health_take_junk",),
    ("GET", "/static/{name}"): ("test_web::test_static_paths_never_leave_the_folder",
                                "test_web::test_static_names_from_hypothesis"),
    ("POST", "/api/chat"): ("test_web::test_chat_bodies", "test_web::test_chat_fields",
                            "test_web::test_chat_transport_junk"),
    ("POST", "/slack/events"): ("test_slack::test_unsigned_requests_are_refused",
                                "test_slack::test_signed_garbage_bodies",
                                "test_slack::test_signed_hostile_events",
                                "test_slack::test_signed_hostile_interactivity_and_commands",
                                "test_slack::test_replayed_and_future_timestamps"),
    ("GET", "/slack/install"): ("test_slack::test_oauth_routes_take_junk",),
    ("GET", "/slack/oauth_redirect"): ("test_slack::test_oauth_routes_take_junk",),
    ("GET", "/admin/login"): ("test_admin::test_sessions_bearers_and_csrf",),
    ("POST", "/admin/login"): ("test_admin::test_login_form_takes_junk",
                               "test_admin::test_the_lockout_holds_under_junk"),
    ("POST", "/admin/logout"): ("test_admin::test_sessions_bearers_and_csrf",),
    ("GET", "/admin"): ("test_admin::test_sessions_bearers_and_csrf",),
    ("GET", "/admin/api/health"): ("test_admin::test_sessions_bearers_and_csrf",
                                   "test_admin::test_the_lockout_holds_under_junk"),
    ("GET", "/admin/escalations"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/api/escalations"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/conversations"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/api/conversations"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/feedback"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/api/feedback"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/knowledge"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/usage"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/health"): ("test_admin_pages::test_list_pages_take_junk_queries",),
    ("GET", "/admin/escalations/{escalation_id}"): (
        "test_admin_pages::test_detail_pages_take_junk_ids",),
    ("GET", "/admin/api/escalations/{escalation_id}"): (
        "test_admin_pages::test_detail_pages_take_junk_ids",),
    ("GET", "/admin/conversations/{conversation_id}"): (
        "test_admin_pages::test_detail_pages_take_junk_ids",),
    ("GET", "/admin/api/conversations/{conversation_id}"): (
        "test_admin_pages::test_detail_pages_take_junk_ids",),
    ("POST", "/admin/escalations/{escalation_id}/{action}"): (
        "test_admin_pages::test_escalation_actions_take_junk",),
    ("POST", "/admin/api/escalations/{escalation_id}/{action}"): (
        "test_admin_pages::test_escalation_actions_take_junk",),
    ("POST", "/admin/knowledge/sync"): ("test_admin_pages::test_knowledge_sync_takes_junk",),
    ("POST", "/api/messages"): ("test_teams::test_bodies_that_are_not_activities",
                                "test_teams::test_hostile_activities_without_auth",
                                "test_teams::test_hostile_activities_with_valid_tokens",
                                "test_teams::test_bad_tokens"),
}

# (method, path) -> why no strategy of its own is needed (the generic fuzz still reaches it).
ALLOWED_WITHOUT_DEDICATED: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "FastAPI's generated schema: it reads no input beyond the generic "
                              "fuzz's query, headers and methods",
}
