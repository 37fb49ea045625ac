"""The studio's front door, one pure-ASGI middleware: Host check, sign-in, same-origin writes, body limit.

Order matters: a foreign Host (DNS rebinding) is refused first, then a caller without credentials (401, before
a byte of the body is read), then a state-changing request from another origin (403), and finally the body is
counted as it streams in, chunked or not, and answered 413 the moment it passes the limit (before any parsing;
the multipart parser has then seen at most the limit, so memory and disk stay bounded).
"""
from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie
from typing import Callable
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

from .auth import Auth

SAFE = ("GET", "HEAD", "OPTIONS")
OPEN = ("/health", "/", "/signin", "/signout")  # reachable without credentials (the page shows a sign-in form)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MiB = 1024 * 1024


def mib(n: float) -> str:
    """Bytes in MiB, the unit every limit is given in: '20 MiB', '28.6 MiB'."""
    v = n / MiB
    return f"{v:.0f} MiB" if abs(v - round(v)) < 0.05 else f"{v:.1f} MiB"


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes its limit; FastAPI passes HTTPExceptions through as they are."""


def host_of(value: str) -> str:
    """'example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1' (lower case)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def default_hosts(bound: str) -> list[str]:
    """Hosts the studio answers to when none are given: the bound address (and loopback names for loopback)."""
    import socket

    if bound in LOOPBACK or bound.startswith("127."):
        return sorted({bound, *LOOPBACK})
    if bound in ("0.0.0.0", "::", ""):  # every interface: this machine's names and addresses
        names = {socket.gethostname().lower(), socket.getfqdn().lower(), *LOOPBACK}
        try:
            names |= {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
        return sorted(names)
    return [bound.lower()]


class Guard:
    """Wraps the app; `limit_for(method, path)` is the body limit in bytes of one request."""

    def __init__(self, app, auth: Auth, allowed_hosts: list[str], limit_for: Callable[[str, str], int]):
        self.app, self.auth, self.limit_for = app, auth, limit_for
        self.hosts = {host_of(h) for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if "*" not in self.hosts and host_of(host) not in self.hosts:
            return await _answer(send, 400, f"host {host!r} is not served here: start the studio with "
                                            f"--allowed-host {host_of(host) or 'NAME'} to allow it")
        path, method = scope["path"], scope["method"]
        principal = self.auth.identify(Auth.token_of(headers, _cookies(headers.get("cookie", ""))))
        scope.setdefault("state", {})["principal"] = principal
        if principal is None and path not in OPEN:
            return await _answer(send, 401, "sign in first: send 'Authorization: Bearer <token>' (an admin "
                                            "prints one with: dreammover studio add-user NAME) or use the page",
                                 {"www-authenticate": "Bearer"})
        if method not in SAFE:
            refusal = _foreign(headers, host)
            if refusal:
                return await _answer(send, 403, refusal)
        limit = self.limit_for(method, path)
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return await _answer(send, 413, f"the request is {mib(int(declared))}; the limit is {mib(limit)}",
                                 {"connection": "close"})
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(413, f"the request is more than {mib(limit)}, the limit; nothing was kept")
            return message

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge as err:  # raised outside FastAPI's handlers (e.g. by another middleware)
            if started:
                raise
            await _answer(send, 413, err.detail, {"connection": "close"})


def _foreign(headers: dict[str, str], host: str) -> str | None:
    """Why a state-changing request is not same-origin (None when it is): Origin, else Sec-Fetch-Site."""
    origin = headers.get("origin")
    if origin is not None:
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            return f"requests from {origin!r} may not change anything here: use the studio's own page"
        return None
    if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        return "requests from another site may not change anything here: use the studio's own page"
    return None  # a script or curl: no browser, no ambient cookie to abuse


def _cookies(header: str) -> dict[str, str]:
    try:
        jar = SimpleCookie()
        jar.load(header)
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


async def _answer(send, status: int, detail: str, extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
