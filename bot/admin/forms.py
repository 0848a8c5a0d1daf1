"""Reading the admin pages' small url-encoded forms.

Starlette's form parser needs python-multipart, a dependency bothub does not carry for forms of
one or two fields. The parsed form is kept on the request, because the CSRF check in
`require_admin` and the route behind it both read it and a request body can be read only once.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request
from starlette.exceptions import HTTPException

MAX_FORM_BYTES = 16 * 1024
MAX_FIELDS = 32
_STATE_KEY = "bothub_admin_form"


async def read_form(request: Request) -> dict[str, str]:
    """The body's fields (first value of each); empty unless it is url-encoded. A body over
    `MAX_FORM_BYTES` is refused (413) without being held in memory."""
    cached: dict[str, str] | None = getattr(request.state, _STATE_KEY, None)
    if cached is not None:
        return cached
    form: dict[str, str] = {}
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise HTTPException(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True,
                              max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            fields = {}
        form = {name: values[0] for name, values in fields.items()}
    setattr(request.state, _STATE_KEY, form)
    return form
