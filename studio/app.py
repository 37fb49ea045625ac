"""The studio's web app (FastAPI; API documented at /docs): the guard, the open routes, the job API, the page."""
from __future__ import annotations

import json
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from dreammover.config import InterpolationConfig
from dreammover.presets import PRESETS

from . import signin
from .auth import Auth
from .guard import Guard
from .limits import StudioLimits
from .page import PAGE
from .routes import Context, router, who
from .settings import Defaults

FORM_OVERHEAD = 1024 * 1024  # the settings fields and multipart framing around the two photos
SMALL_BODY = 256 * 1024      # every other request (sign-in, re-render forms)


def create_app(store, runner, default_config: InterpolationConfig | None = None,
               limits: StudioLimits = StudioLimits(), auth: Auth | None = None,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """The API over a JobStore and a started Runner, behind the guard (sign-in, Host/Origin, body limit).

    `auth` None: sign-in required, with the users of the store's home (no users yet: nobody gets in).
    """
    from .auth import UserStore

    auth = auth if auth is not None else Auth(UserStore(store.home))
    @asynccontextmanager
    async def lifespan(_app):
        yield
        # On the server's shutdown, not after uvicorn.run returns: uvicorn re-raises SIGTERM once it has
        # shut down, so code after it never runs and a clean stop would count as a crash on restart.
        await run_in_threadpool(runner.stop)

    app = FastAPI(title="dreammover studio", version="2", lifespan=lifespan,
                  description="Two photos in, a short clip out: queue jobs, follow them, download clips. "
                              "Send 'Authorization: Bearer <token>' (dreammover studio add-user NAME).")
    svd_ready = getattr(runner.backend, "svd", None) is not None
    defaults = Defaults.of(default_config, svd_ready)
    dm = getattr(runner.backend, "dm", None)
    ctx = Context(store, runner, limits, defaults, getattr(dm, "components", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):  # one sentence, not a list of objects
        words = {"missing": "is required", "int_parsing": "must be a whole number"}
        msg = "; ".join(f"{e['loc'][-1]} {words.get(e['type'], e['msg'])}" for e in exc.errors())
        return JSONResponse({"detail": msg}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> Response:
        principal = request.state.principal
        if principal is None:
            return signin.signin_page()
        values = {"__PRESETS__": {k: v.model_dump() for k, v in PRESETS.items()}, "__LIMITS__": limits.model_dump(),
                  "__DEFAULTS__": defaults.base, "__SVD__": svd_ready,
                  "__RESTYLE__": getattr(runner.backend, "restyle", None) is not None,
                  "__USER__": {"name": principal.name, "admin": principal.admin, "auth": auth.enabled}}
        html = PAGE
        for key, value in values.items():  # JSON in a <script>: '</' must not end it early
            html = html.replace(key, json.dumps(value).replace("</", "<\\/"))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/presets")
    def presets(request: Request) -> dict:
        """The named clip presets (dreammover/presets.py)."""
        who(request)
        return {k: v.model_dump() for k, v in PRESETS.items()}

    @app.get("/me")
    def me(request: Request) -> dict:
        """Who this request is signed in as."""
        p = who(request)
        return {"name": p.name, "admin": p.admin}

    app.include_router(signin.router(auth))
    app.include_router(router(ctx))
    upload_limit = 2 * limits.upload_bytes + FORM_OVERHEAD

    def limit_for(method: str, path: str) -> int:
        return upload_limit if (method, path) == ("POST", "/jobs") else SMALL_BODY

    app.add_middleware(Guard, auth=auth, allowed_hosts=list(allowed_hosts or ("127.0.0.1", "localhost")),
                       limit_for=limit_for)
    return app
