"""The admin area's HTML: one layout, the login form and the home page.

Pages are rendered on the server from plain strings: every dynamic value goes through `escape`,
and each page carries its own style (no CDN, nothing else to serve). The Content-Security-Policy
allows exactly that style, by hash, and no script at all, so an injected tag could not run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from html import escape
from typing import Any

from fastapi.responses import HTMLResponse

_CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:44rem;margin:3rem auto;padding:2rem;background:#fff;border:1px solid #d0d7de;
border-radius:8px}
h1{font-size:1.4rem;margin-top:0}
label{display:block;font-weight:600;margin-bottom:.4rem}
input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;
border:1px solid #d0d7de;border-radius:6px}
button{margin-top:1rem;padding:.45rem 1rem;font:inherit;border-radius:6px;border:1px solid #1f883d;
background:#1f883d;color:#fff;cursor:pointer}
.error{color:#d1242f;background:#ffebe9;border:1px solid #ffcecb;padding:.5rem .75rem;
border-radius:6px}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d0d7de}
.ok{color:#1a7f37}.down{color:#d1242f}
footer{margin-top:2rem;display:flex;gap:1rem;align-items:center}
footer form button{margin:0;background:#fff;color:#1f2328;border-color:#d0d7de}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def layout(title: str, body: str) -> str:
    """A whole page around `body`, which must already be escaped HTML."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer">'
            f"<title>{escape(title)} · bothub admin</title><style>{_CSS}</style></head>"
            f"<body><main>{body}</main></body></html>")


def html_response(page: str, status_code: int = 200,
                  headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(page, status_code=status_code,
                        headers={**SECURITY_HEADERS, **(headers or {})})


def login_page(error: str = "") -> str:
    """The sign-in form. The token field is never filled in again after a failure."""
    notice = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return layout("Sign in", (
        "<h1>bothub admin</h1>"
        f"{notice}"
        '<form method="post" action="/admin/login">'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        "required autofocus>"
        "<button type=\"submit\">Sign in</button></form>"
        "<p>The token is the value of <code>BOTHUB_ADMIN_TOKEN</code>.</p>"))


def logout_form(csrf: str) -> str:
    return ('<form method="post" action="/admin/logout">'
            f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
            '<button type="submit">Sign out</button></form>')


def home_page(health: Mapping[str, Any], csrf: str) -> str:
    """The admin home: each component's state, and links to the details."""
    rows = []
    components: Mapping[str, Any] = health.get("components", {})
    for name, component in components.items():
        state = str(component.get("state", "unknown")) if isinstance(component, dict) else "?"
        css = "ok" if state in {"ok", "configured"} else "down" if state == "down" else ""
        rows.append(f'<tr><td>{escape(name)}</td><td class="{css}">{escape(state)}</td></tr>')
    return layout("Home", (
        "<h1>bothub admin</h1>"
        f"<p>Status: <strong>{escape(str(health.get('status', 'unknown')))}</strong></p>"
        f"<table><tr><th>Component</th><th>State</th></tr>{''.join(rows)}</table>"
        "<h2>Health</h2><ul>"
        '<li><a href="/admin/api/health">Component health (JSON)</a></li>'
        '<li><a href="/healthz">/healthz</a> (public)</li>'
        '<li><a href="/metrics">/metrics</a> (Prometheus)</li></ul>'
        f"<footer>{logout_form(csrf)}</footer>"))


def message_page(title: str, text: str) -> str:
    """A page that only says why a request was refused."""
    return layout(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>"
                         '<p><a href="/admin">Back to the admin home</a></p>')
