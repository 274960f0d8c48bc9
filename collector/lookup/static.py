"""The helpdesk page's own files (``web/``), served with a policy that lets it load nothing else.
The collector runs on closed networks, and a helpdesk page that loads a third-party script would
leak who looked up whom: every file comes from here, under a Content-Security-Policy saying so.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import PlainTextResponse, Response

__all__ = ["static_file"]

WEB_DIR = Path(__file__).with_name("web")
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def static_file(name: str) -> Response:
    """One of the page's files by name, or 404 for any other name (no path is ever joined from input)."""
    if name not in _TYPES:
        return PlainTextResponse("not found", status_code=404)
    body = (WEB_DIR / name).read_bytes()
    return Response(
        body,
        media_type=_TYPES[name],
        headers={
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
