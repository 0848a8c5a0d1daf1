"""The admin area's HTML: one layout and the small pieces every page is built from.

Pages are rendered on the server from strings. Escaping is by type: a plain `str` is always
escaped where it is put into a page; only an `Html` value (made by these helpers, or by `html()`
around a literal you wrote) goes in as markup. The Content-Security-Policy allows exactly the
page's own style block, by hash, and no script at all, so an injected tag could not run and no
`style="..."` attribute takes effect (use the classes below; add CSS through `extra_css`).

Helpers for page modules (names are stable):

- `render(request, title, body, *, session, active, extra_css="", status_code=200)` ->
  `HTMLResponse`: the whole page (top bar with the signed-in name and Sign out, side nav, the
  flash notice carried by the URL, `body` in the content area) with the security headers.
  `active` is the nav key to highlight: one of `NAV` ("escalations", "conversations",
  "feedback", "knowledge", "usage", "health"). `page(...)` is the same, returning the text.
- `html(text)` marks a literal as markup; `esc(value)` escapes anything that is not `Html`;
  `join(parts)` concatenates escaping each part.
- `heading(title, *, subtitle="", actions=...)`: the page's h1 row, with buttons on the right.
- `card(body, *, title="")`, `stats([(label, value, hint), ...])`: boxes and figure tiles.
- `table(headers, rows, *, empty="Nothing here yet.", numeric=(2,), caption="")`: cells are
  `str` (escaped) or `Html`; `numeric` column indexes are right-aligned.
- `badge(text, tone=None)`: a pill; tone is "ok" | "warn" | "bad" | "info" | "muted", or
  guessed from the text ("open" -> warn, "claimed" -> info, "resolved"/"ok" -> ok, "failed"/
  "down" -> bad).
- `link(href, text)`, `when(datetime)`, `age(datetime)`, `pager(...)`, `filters(...)`.
- `post_button(action, label, *, csrf, fields={}, tone="primary"|"secondary"|"danger")`: a POST
  form with the CSRF token, for any state-changing action.
- `redirect_with_notice(request, url, text, tone="ok")`: POST-redirect-GET with a signed flash
  ("Claimed #12"); the page at `url` shows it. Unsigned or tampered notices are not shown.
- `error_page(request, session, status, title, text, *, active)`: a 4xx page inside the layout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

if TYPE_CHECKING:
    from bot.admin.auth import AdminSession

Tone = Literal["ok", "warn", "bad", "info", "muted"]
ButtonTone = Literal["primary", "secondary", "danger"]


class Html(str):
    """Text that is already markup: put into a page as it is, never escaped again."""

    __slots__ = ()

    def __add__(self, other: str) -> Html:
        return Html(str.__add__(self, esc(other)))


def html(text: str) -> Html:
    """Mark a literal you wrote as markup. Never pass anything that came from outside."""
    return Html(text)


def esc(value: object) -> Html:
    """`value` as markup: `Html` as it is, anything else as escaped text (None is empty)."""
    if isinstance(value, Html):
        return value
    return Html(escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object], separator: str = "") -> Html:
    return Html(escape(separator).join(esc(part) for part in parts))


# ---------------------------------------------------------------------------- style and headers

_CSS = """
:root{--bg:#f4f6f9;--panel:#fff;--ink:#1c2430;--muted:#5f6b7a;--line:#dfe3ea;
--brand:#2f5bd3;--brand-ink:#fff;--side:#17202e;--side-ink:#c6cedb;--ok:#1a7f37;
--ok-bg:#dcf5e3;--warn:#8a5a00;--warn-bg:#fff1cc;--bad:#b42318;--bad-bg:#fde4e1;
--info:#1f4fb8;--info-bg:#e1eafe;--muted-bg:#eceff3}
*{box-sizing:border-box}
html,body{margin:0}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:var(--bg)}
a{color:var(--brand);text-decoration:none}a:hover{text-decoration:underline}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
.shell{display:grid;grid-template-columns:208px minmax(0,1fr);min-height:100vh}
.side{background:var(--side);color:var(--side-ink)}
.side-inner{position:sticky;top:0;padding:1rem 0}
.brand{display:flex;align-items:center;gap:.55rem;padding:.2rem 1.2rem 1.1rem;color:#fff;
font-weight:650;font-size:1.05rem;letter-spacing:.01em;white-space:nowrap}
.brand .mark{display:inline-grid;place-items:center;width:1.7rem;height:1.7rem;
border-radius:7px;background:var(--brand);color:#fff;font-size:.85rem}
.brand small{color:var(--side-ink);font-weight:400;font-size:.78rem}
.side nav a{display:block;padding:.5rem 1.2rem;color:var(--side-ink);border-left:3px solid
transparent}
.side nav a:hover{background:#222d3f;color:#fff;text-decoration:none}
.side nav a.active{background:#243149;color:#fff;border-left-color:#6f95ff;font-weight:600}
.side .group{padding:.9rem 1.2rem .3rem;font-size:.7rem;text-transform:uppercase;
letter-spacing:.08em;color:#7d889b}
.top{display:flex;justify-content:flex-end;align-items:center;gap:.9rem;height:52px;
padding:0 1.6rem;background:var(--panel);border-bottom:1px solid var(--line)}
.top .who{color:var(--muted)}.top .who strong{color:var(--ink)}
.content{padding:1.4rem 1.6rem 3rem;max-width:1280px}
.head{display:flex;align-items:flex-end;justify-content:space-between;gap:1rem;
margin-bottom:1rem;flex-wrap:wrap}
.head h1{font-size:1.35rem;margin:0;line-height:1.3}
.head p{margin:.15rem 0 0;color:var(--muted)}
.head .actions{display:flex;gap:.5rem;flex-wrap:wrap}
h2{font-size:1.02rem;margin:0 0 .7rem}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;
padding:1rem 1.1rem;margin-bottom:1rem}
.card.flush{padding:0;overflow:auto}
.card.flush h2{padding:.9rem 1.1rem 0}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem}
.grid-side{display:grid;grid-template-columns:minmax(0,1fr) 300px;gap:1rem;align-items:start}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:1rem;
margin-bottom:1rem}
.stat{background:var(--panel);border:1px solid var(--line);border-radius:10px;
padding:.85rem 1.05rem}
.stat .label{color:var(--muted);font-size:.8rem;text-transform:uppercase;letter-spacing:.05em}
.stat .value{font-size:1.6rem;font-weight:650;line-height:1.25}
.stat .hint{color:var(--muted);font-size:.82rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.55rem .8rem;border-bottom:1px solid var(--line);
vertical-align:top}
th{font-size:.76rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);
background:#f9fafc;font-weight:600;white-space:nowrap}
tbody tr:hover{background:#fafbfd}
tbody tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.empty{color:var(--muted);text-align:center;padding:1.6rem}
.sub{display:block;color:var(--muted);font-size:.82rem}
time{white-space:nowrap}
td.actions{white-space:nowrap}td.actions form{display:inline-block;margin:0 .25rem .25rem 0}
.clip{max-width:34ch;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.badge{display:inline-block;padding:.05rem .55rem;border-radius:999px;font-size:.78rem;
font-weight:600;white-space:nowrap;background:var(--muted-bg);color:var(--muted)}
.badge.ok{background:var(--ok-bg);color:var(--ok)}
.badge.warn{background:var(--warn-bg);color:var(--warn)}
.badge.bad{background:var(--bad-bg);color:var(--bad)}
.badge.info{background:var(--info-bg);color:var(--info)}
button,.button{display:inline-block;padding:.38rem .85rem;font:inherit;font-weight:550;
border-radius:7px;border:1px solid var(--brand);background:var(--brand);color:var(--brand-ink);
cursor:pointer;line-height:1.35}
button:hover,.button:hover{filter:brightness(.95);text-decoration:none}
button.secondary,.button.secondary{background:var(--panel);color:var(--ink);
border-color:#c9d0da}
button.danger{background:var(--panel);color:var(--bad);border-color:#f0b5ae}
button.small{padding:.2rem .6rem;font-size:.85rem}
form.inline{display:inline}
.notice{padding:.65rem .9rem;border-radius:8px;margin-bottom:1rem;border:1px solid}
.notice.ok{background:var(--ok-bg);border-color:#a7e3b8;color:#0f5223}
.notice.warn{background:var(--warn-bg);border-color:#f1d48a;color:#6b4500}
.notice.bad{background:var(--bad-bg);border-color:#f5b7b0;color:#8c1d13}
.notice.info{background:var(--info-bg);border-color:#b7cbf7;color:#173b8a}
.filters{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap;margin-bottom:1rem}
.filters a{padding:.28rem .75rem;border-radius:999px;border:1px solid var(--line);
background:var(--panel);color:var(--ink)}
.filters a.active{background:var(--ink);border-color:var(--ink);color:#fff}
.filters a:hover{text-decoration:none;border-color:#b8c0cc}
.filters form{margin-left:auto;display:flex;gap:.4rem}
input[type=text],input[type=search],input[type=password]{font:inherit;padding:.42rem .6rem;
border:1px solid #c9d0da;border-radius:7px;background:#fff;min-width:16rem}
input:focus,button:focus-visible,a:focus-visible{outline:2px solid #8fb0ff;outline-offset:1px}
.pager{display:flex;justify-content:space-between;align-items:center;padding:.7rem 1rem;
color:var(--muted);border-top:1px solid var(--line)}
dl.facts{display:grid;grid-template-columns:auto 1fr;gap:.35rem 1rem;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.turns{display:flex;flex-direction:column;gap:.8rem}
.turn{border:1px solid var(--line);border-radius:10px;padding:.7rem .9rem;background:#fff;
max-width:52rem}
.turn.user{background:#f3f6ff;border-color:#d5e0fb;align-self:flex-start}
.turn.bot{align-self:flex-end;width:100%}
.turn.agent{background:#fff8e6;border-color:#f1dca4}
.turn header{display:flex;gap:.6rem;align-items:baseline;flex-wrap:wrap;margin-bottom:.3rem;
font-size:.84rem;color:var(--muted)}
.turn header strong{color:var(--ink)}
.turn .text{white-space:pre-wrap;overflow-wrap:anywhere}
.turn footer{margin-top:.45rem;font-size:.84rem;color:var(--muted)}
.turn ol{margin:.25rem 0 0;padding-left:1.3rem}
.timeline{list-style:none;margin:0;padding:0}
.timeline li{padding:.45rem 0 .45rem 1rem;border-left:2px solid var(--line);position:relative}
.timeline li::before{content:"";position:absolute;left:-5px;top:.85rem;width:8px;height:8px;
border-radius:50%;background:#9aa6b8}
.timeline .t{color:var(--muted);font-size:.82rem;display:block}
.login{max-width:24rem;margin:12vh auto 0;background:var(--panel);border:1px solid var(--line);
border-radius:12px;padding:1.8rem 2rem}
.login .brand{color:var(--ink);padding:0 0 1rem}.login .brand small{color:var(--muted)}
.login h1{font-size:1.2rem;margin:0 0 .4rem}
.login label{display:block;font-weight:600;margin:.8rem 0 .3rem}
.login input{width:100%;min-width:0}
.login button{width:100%;margin-top:1.2rem;padding:.55rem}
.login p.hint{color:var(--muted);font-size:.85rem;margin:1rem 0 0}
.message{max-width:36rem;margin:12vh auto 0}
@media (max-width:1100px){.shell{grid-template-columns:176px minmax(0,1fr)}
.content{padding:1.1rem 1.1rem 2.5rem}.grid-side{grid-template-columns:minmax(0,1fr)}
.clip{max-width:24ch}th,td{padding:.5rem .6rem}
td.actions{white-space:normal}td.actions form{display:block;margin:0 0 .3rem}
td.actions button{width:100%}.brand{padding:.2rem 1rem 1.1rem}}
@media (max-width:760px){.shell{grid-template-columns:1fr}.side-inner{position:static}
.grid2{grid-template-columns:1fr}}
"""


@lru_cache(maxsize=64)
def _csp(style: str) -> str:
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def security_headers(style: str = _CSS) -> dict[str, str]:
    """The headers every admin page carries; the CSP admits exactly `style`."""
    return {
        "Content-Security-Policy": _csp(style),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _document(title: str, body: Html, style: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer">'
            f"<title>{esc(title)} · bothub admin</title><style>{style}</style></head>"
            f"<body>{body}</body></html>")


def html_response(page: str, status_code: int = 200,
                  headers: Mapping[str, str] | None = None, *,
                  style: str = _CSS) -> HTMLResponse:
    return HTMLResponse(page, status_code=status_code,
                        headers={**security_headers(style), **(headers or {})})


# -------------------------------------------------------------------------------- the frame

NAV: tuple[tuple[str, str, str], ...] = (
    ("overview", "Overview", "/admin"),
    ("escalations", "Escalations", "/admin/escalations"),
    ("conversations", "Conversations", "/admin/conversations"),
    ("feedback", "Feedback", "/admin/feedback"),
    ("knowledge", "Knowledge base", "/admin/knowledge"),
    ("usage", "Usage & cost", "/admin/usage"),
    ("health", "Health", "/admin/health"),
)
_NAV_GROUPS = {"overview": "Support", "knowledge": "Operations"}


def _brand(subtitle: str = "admin") -> Html:
    return html(f'<div class="brand"><span class="mark">b</span><span>bothub '
                f"<small>{esc(subtitle)}</small></span></div>")


def _nav(active: str) -> Html:
    links = []
    for key, label, href in NAV:
        if key in _NAV_GROUPS:
            links.append(f'<div class="group">{esc(_NAV_GROUPS[key])}</div>')
        current = ' class="active" aria-current="page"' if key == active else ""
        links.append(f'<a href="{esc(href)}"{current}>{esc(label)}</a>')
    return html(f'<aside class="side"><div class="side-inner">{_brand()}'
                f'<nav aria-label="Admin">{"".join(links)}</nav></div></aside>')


def logout_form(csrf: str) -> Html:
    return post_button("/admin/logout", "Sign out", csrf=csrf, tone="secondary", small=True)


def _top(session: AdminSession) -> Html:
    # A bearer session has no name: `who` already says "admin (API token)".
    how = {"sso": "single sign-on", "bearer": "", "cookie": ""}[session.via]
    note = f' <span class="muted">({esc(how)})</span>' if how else ""
    # Only our own cookie can be signed out of: SSO ends at the proxy, a token with the script.
    out = logout_form(session.csrf) if session.via == "cookie" else ""
    return html(f'<header class="top"><span class="who">Signed in as '
                f"<strong>{esc(session.who)}</strong>{note}</span>{out}</header>")


def page(title: str, body: str, *, session: AdminSession, active: str = "",
         notice: Notice | None = None, style: str = _CSS) -> str:
    """A whole admin page: nav, top bar, the notice (if any), then `body` (markup)."""
    flash = (html(f'<div class="notice {notice.tone}" role="status">{esc(notice.text)}</div>')
             if notice else "")
    return _document(title, html(
        f'<div class="shell">{_nav(active)}<div class="main">{_top(session)}'
        f'<main class="content" id="content">{flash}{Html(body)}</main></div></div>'), style)


def render(request: Request, title: str, body: str, *, session: AdminSession,
           active: str = "", extra_css: str = "", status_code: int = 200) -> HTMLResponse:
    """`page` as a response, with the flash notice from `request`'s URL (if validly signed)."""
    style = _CSS + extra_css
    return html_response(page(title, body, session=session, active=active,
                              notice=read_notice(request), style=style),
                         status_code, style=style)


def error_page(request: Request, session: AdminSession, status_code: int, title: str,
               text: str, *, active: str = "") -> HTMLResponse:
    body = join([heading(title), card(html(f"<p>{esc(text)}</p>"
                                           '<p><a href="/admin">Back to the overview</a></p>'))])
    return render(request, title, body, session=session, active=active,
                  status_code=status_code)


def layout(title: str, body: str) -> str:
    """A bare page (no nav, nobody signed in) around `body` (markup): sign-in, refusals."""
    return _document(title, html(f'<main class="message">{Html(body)}</main>'), _CSS)


def login_page(error: str = "", name: str = "") -> str:
    """The sign-in form: a name (who claims escalations) and the token. The token field is
    never filled in again after a failure; the name is."""
    notice = f'<div class="notice bad" role="alert">{esc(error)}</div>' if error else ""
    return _document("Sign in", html(
        f'<main class="login">{_brand()}<h1>Sign in</h1>{notice}'
        '<form method="post" action="/admin/login">'
        '<label for="name">Your name</label>'
        f'<input id="name" name="name" type="text" autocomplete="name" maxlength="64" '
        f'required value="{esc(name)}" {"" if name else "autofocus"}>'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        f'required {"autofocus" if name else ""}>'
        '<button type="submit">Sign in</button></form>'
        '<p class="hint">Your name is shown on what you claim and resolve. The token is the '
        "value of <code>BOTHUB_ADMIN_TOKEN</code>.</p></main>"), _CSS)


def message_page(title: str, text: str) -> str:
    """A page that only says why a request was refused."""
    return layout(title, html(f'<div class="card"><h1>{esc(title)}</h1><p>{esc(text)}</p>'
                              '<p><a href="/admin">Back to the admin home</a></p></div>'))


# ------------------------------------------------------------------------------ the pieces

def heading(title: str, *, subtitle: str = "", actions: Sequence[Html] = ()) -> Html:
    sub = f"<p>{esc(subtitle)}</p>" if subtitle else ""
    acts = f'<div class="actions">{join(actions)}</div>' if actions else ""
    return html(f'<div class="head"><div><h1>{esc(title)}</h1>{sub}</div>{acts}</div>')


def card(body: object, *, title: str = "", flush: bool = False) -> Html:
    """A white box; `flush` for a table that should reach the edges."""
    head = f"<h2>{esc(title)}</h2>" if title else ""
    return html(f'<section class="card{" flush" if flush else ""}">{head}{esc(body)}</section>')


def stats(items: Iterable[tuple[str, object, str]]) -> Html:
    """Figure tiles: (label, value, hint)."""
    tiles = [f'<div class="stat"><div class="label">{esc(label)}</div>'
             f'<div class="value">{esc(value)}</div><div class="hint">{esc(hint)}</div></div>'
             for label, value, hint in items]
    return html(f'<div class="stats">{"".join(tiles)}</div>')


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
          empty: str = "Nothing here yet.", numeric: Iterable[int] = (),
          caption: str = "", actions_column: bool = False) -> Html:
    """A table; each cell is `str` (escaped) or `Html`. `actions_column`: the last column holds
    buttons and does not wrap."""
    right = set(numeric)
    last = len(headers) - 1

    def cls(index: int) -> str:
        names = (["num"] if index in right else []) + \
            (["actions"] if actions_column and index == last else [])
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f'<th scope="col"{cls(i)}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = ["<tr>" + "".join(f"<td{cls(i)}>{esc(cell)}</td>" for i, cell in enumerate(row))
            + "</tr>" for row in rows]
    if not body:
        body = [f'<tr><td class="empty" colspan="{len(headers)}">{esc(empty)}</td></tr>']
    cap = f"<caption class=\"muted\">{esc(caption)}</caption>" if caption else ""
    return html(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
                "</table>")


_TONES: dict[str, Tone] = {
    "open": "warn", "claimed": "info", "resolved": "ok", "ok": "ok", "configured": "ok",
    "succeeded": "ok", "success": "ok", "done": "ok", "up": "ok", "healthy": "ok",
    "running": "info", "pending": "muted", "degraded": "warn", "warning": "warn",
    "failed": "bad", "failure": "bad", "error": "bad", "down": "bad", "escalated": "warn",
    "helpful": "ok", "unhelpful": "bad",
}


def badge(text: str, tone: Tone | None = None) -> Html:
    chosen = tone or _TONES.get(text.lower(), "muted")
    return html(f'<span class="badge {chosen}">{esc(text)}</span>')


def link(href: str, text: object) -> Html:
    return html(f'<a href="{esc(href)}">{esc(text)}</a>')


def post_button(action: str, label: str, *, csrf: str, fields: Mapping[str, object] = {},
                tone: ButtonTone = "primary", small: bool = False, title: str = "") -> Html:
    """A one-button POST form carrying the CSRF token and `fields` as hidden inputs."""
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
                     for k, v in fields.items())
    classes = " ".join(c for c in (tone if tone != "primary" else "", "small" if small else "")
                       if c)
    attrs = (f' class="{classes}"' if classes else "") + (f' title="{esc(title)}"' if title
                                                          else "")
    return html(f'<form method="post" action="{esc(action)}" class="inline">'
                f'<input type="hidden" name="csrf_token" value="{esc(csrf)}">{hidden}'
                f'<button type="submit"{attrs}>{esc(label)}</button></form>')


def when(moment: datetime | None) -> Html:
    """An absolute UTC time, with the exact value as a tooltip."""
    if moment is None:
        return html('<span class="muted">–</span>')
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return html(f'<time datetime="{esc(moment.isoformat())}" '
                f'title="{esc(moment.isoformat(timespec="seconds"))}">'
                f'{esc(moment.strftime("%Y-%m-%d %H:%M"))}</time>')


def age(moment: datetime | None, *, now: datetime | None = None) -> str:
    """"3 min", "5 h", "2 d": how long ago."""
    if moment is None:
        return "–"
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def filters(options: Iterable[tuple[str, str, bool]], *, search: tuple[str, str, str] | None
            = None) -> Html:
    """Pill links (label, href, active) and an optional GET search box (action, name, value)."""
    active = ' class="active" aria-current="true"'
    pills = [f'<a href="{esc(href)}"{active if on else ""}>{esc(label)}</a>'
             for label, href, on in options]
    box = ""
    if search is not None:
        action, name, value = search
        box = (f'<form method="get" action="{esc(action)}" role="search">'
               f'<input type="search" name="{esc(name)}" value="{esc(value)}" '
               f'placeholder="Search text" maxlength="200" aria-label="Search">'
               '<button type="submit" class="secondary">Search</button></form>')
    return html(f'<div class="filters">{"".join(pills)}{box}</div>')


def pager(base: str, params: Mapping[str, object], *, page_number: int, has_next: bool,
          shown: int) -> Html:
    """Previous / next links under a flush table; `params` are kept in the links."""
    def href(number: int) -> str:
        kept = {k: v for k, v in params.items() if v not in (None, "")}
        return f"{base}?{urlencode({**kept, 'page': number})}"

    prev = link(href(page_number - 1), "← Newer") if page_number > 1 else html("<span></span>")
    nxt = link(href(page_number + 1), "Older →") if has_next else html("<span></span>")
    return html(f'<div class="pager">{prev}<span>Page {page_number} · {shown} shown</span>'
                f"{nxt}</div>")


# ------------------------------------------------------------------------- flash notices

class Notice:
    """A one-line result of an action, shown once at the top of the next page."""

    __slots__ = ("text", "tone")
    MAX_CHARS = 300

    def __init__(self, text: str, tone: Tone = "ok") -> None:
        self.text = text[: self.MAX_CHARS]
        self.tone: Tone = tone


def _signer(request: Request) -> Any:
    return getattr(request.app.state, "admin_auth", None)


def notice_query(request: Request, text: str, tone: Tone = "ok") -> str:
    """`notice=...&tone=...&sig=...` for a URL: signed, so nobody can put words on our page."""
    notice = Notice(text, tone)
    auth = _signer(request)
    sig = auth.sign(f"{notice.tone}:{notice.text}") if auth is not None else ""
    return urlencode({"notice": notice.text, "tone": notice.tone, "sig": sig})


def redirect_with_notice(request: Request, url: str, text: str,
                         tone: Tone = "ok") -> RedirectResponse:
    """POST-redirect-GET to `url` (a path of ours), which then shows `text` once."""
    separator = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{separator}{notice_query(request, text, tone)}",
                            status_code=303)


def read_notice(request: Request) -> Notice | None:
    text, tone, sig = (request.query_params.get(k) for k in ("notice", "tone", "sig"))
    auth = _signer(request)
    if not text or not sig or auth is None or tone not in ("ok", "warn", "bad", "info",
                                                           "muted"):
        return None
    if not hmac.compare_digest(auth.sign(f"{tone}:{text}").encode("ascii"),
                               sig.encode("utf-8", "replace")):
        return None
    return Notice(text, tone)  # type: ignore[arg-type]  # checked against the literals above
