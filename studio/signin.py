"""The open routes: health, the sign-in form and its POST (an HttpOnly SameSite cookie), sign-out."""
from __future__ import annotations

from html import escape

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .auth import COOKIE, Auth

SIGNIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>dreammover studio: sign in</title>
<style>body{font:16px/1.4 system-ui,sans-serif;background:#f5f5f7;margin:0;display:grid;place-items:center;
min-height:100vh}form{background:#fff;border:1px solid #d2d2d7;border-radius:10px;padding:1.4em;width:min(92vw,380px)}
h1{font-size:1.2em;margin:0 0 .8em}input,button{font:inherit;width:100%;min-height:44px;padding:.4em;
margin:.3em 0;box-sizing:border-box}button{background:#0a64d8;color:#fff;border:0;border-radius:6px}
p{color:#6e6e73;font-size:.9em}.bad{color:#b3261e}</style></head>
<body><form method="post" action="/signin" id="signin"><h1>dreammover studio</h1>
<label for="token">Your access token</label>
<input type="password" name="token" id="token" autocomplete="current-password" required autofocus>
<button type="submit" id="signin-go">Sign in</button>
<p class="bad" id="signin-msg" role="alert">__MSG__</p>
<p>No token? Ask whoever runs the studio: <code>dreammover studio add-user YOUR-NAME</code> prints one.</p>
</form></body></html>"""
MONTH = 30 * 24 * 3600


def signin_page(message: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(SIGNIN.replace("__MSG__", escape(message)), status_code=status,
                        headers={"Cache-Control": "no-store"})


def router(auth: Auth) -> APIRouter:
    """/health, /signin and /signout; every other route needs a Principal (studio.guard)."""
    api = APIRouter()

    @api.get("/health", include_in_schema=False)
    def health() -> dict:
        """Open to all: the server is up (says nothing about jobs or users)."""
        return {"ok": True}

    @api.get("/signin", include_in_schema=False)
    def form() -> HTMLResponse:
        return signin_page()

    @api.post("/signin", include_in_schema=False)
    def signin(request: Request, token: str = Form("")) -> Response:
        """A valid token -> the cookie that signs the page in; the token itself never reaches page scripts."""
        if auth.identify(token.strip()) is None:
            return signin_page("That token is not valid (it may have been revoked).", 401)
        out = RedirectResponse("/", status_code=303)
        out.set_cookie(COOKIE, token.strip(), max_age=MONTH, httponly=True, samesite="strict",
                       secure=request.url.scheme == "https", path="/")
        return out

    @api.post("/signout", include_in_schema=False)
    def signout() -> Response:
        out = RedirectResponse("/", status_code=303)
        out.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return out

    return api
