"""The dashboard's web server (aiohttp): the page, its JSON API, and access control.

Every API answer is JSON; a bad parameter is a 400, an unknown id a 404, an unreachable
control store a 503 saying so, never a 500 page. Bound beyond loopback, every request needs
the token (the cluster's password, or one printed at start): as `Authorization: Bearer`,
or once as `?token=` in the page's URL (kept in a cookie).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sys
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import redis
from aiohttp import web

from redray.control import reconnect
from redray.dashboard import views

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_COOKIE = "redray_dashboard_token"
#: The environment variable the token reaches the server process by (never its argv).
TOKEN_ENV = "REDRAY_DASHBOARD_TOKEN"
_OWNER_WATCH = web.AppKey("owner_watch", asyncio.Task)


def make_app(client: redis.Redis, token: str | None) -> web.Application:
    app = web.Application(middlewares=[_answer_errors, _require_token(token)])
    page = resources.files("redray.dashboard").joinpath("static/index.html").read_text()

    async def read(function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, client, *args)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def overview(request: web.Request) -> web.Response:
        return web.json_response(await read(views.overview))

    async def nodes(request: web.Request) -> web.Response:
        return web.json_response(await read(views.nodes))

    async def node(request: web.Request) -> web.Response:
        return web.json_response(await read(views.node, request.match_info["node_id"]))

    async def jobs(request: web.Request) -> web.Response:
        return web.json_response(await read(views.jobs))

    async def job(request: web.Request) -> web.Response:
        return web.json_response(await read(views.job, request.match_info["job_id"]))

    async def errors(request: web.Request) -> web.Response:
        limit = _int_param(request, "limit", 100)
        return web.json_response(await read(views.errors, limit))

    async def listing(request: web.Request) -> web.Response:
        query = request.query
        filters = []
        for key, value in query.items():
            if key not in ("limit", "detail"):
                predicate, value = ("!=", value[1:]) if value.startswith("!") else ("=", value)
                filters.append((key, predicate, value))
        kind = request.match_info["kind"]
        limit = _int_param(request, "limit", 100)
        detail = query.get("detail", "") in ("1", "true")
        return web.json_response(await read(views.listing, kind, filters, limit, detail))

    async def task(request: web.Request) -> web.Response:
        return web.json_response(await read(views.task, request.match_info["task_id"]))

    async def actor(request: web.Request) -> web.Response:
        return web.json_response(await read(views.actor, request.match_info["actor_id"]))

    async def timeline(request: web.Request) -> web.Response:
        events = await read(views.timeline)
        headers = {"Content-Disposition": 'attachment; filename="redray-timeline.json"'}
        return web.json_response(events, headers=headers)

    app.add_routes(
        [
            web.get("/", index),
            web.get("/api/tasks/{task_id}", task),
            web.get("/api/actors/{actor_id}", actor),
            web.get("/api/timeline", timeline),
            web.get("/api/list/{kind}", listing),
            web.get("/api/overview", overview),
            web.get("/api/nodes", nodes),
            web.get("/api/nodes/{node_id}", node),
            web.get("/api/jobs", jobs),
            web.get("/api/jobs/{job_id}", job),
            web.get("/api/errors", errors),
        ]
    )
    return app


def _int_param(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer; got {text!r}") from None


@web.middleware
async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status >= 400 and request.path.startswith("/api/"):
            return web.json_response({"error": error.reason}, status=error.status)
        raise
    except views.NotFound as error:
        return web.json_response({"error": str(error)}, status=404)
    except ValueError as error:
        return web.json_response({"error": str(error)}, status=400)
    except (redis.RedisError, OSError) as error:
        message = f"control store unreachable: {error}"
        return web.json_response({"error": message}, status=503)


def _require_token(token: str | None) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not token:
            return await handler(request)
        offered = (
            request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            or request.query.get("token")
            or request.cookies.get(TOKEN_COOKIE)
            or ""
        )
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return web.json_response(
                {"error": "this dashboard needs its token: open it with ?token=... or send "
                 "'Authorization: Bearer <token>' (the cluster's password, or the token "
                 "printed when the dashboard started)"},
                status=401,
            )  # fmt: skip
        response = await handler(request)
        if request.query.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check


def main(argv: list[str] | None = None) -> None:
    """`python -m redray.dashboard.server CONFIG_JSON`: serve until SIGTERM."""
    config = json.loads((argv or sys.argv[1:])[0])
    # No retries: a request answers 503 at once while Redis is away.
    client = reconnect.client(reconnect.with_env_password(config["redis_kwargs"]), retry=False)
    app = make_app(client, os.environ.get(TOKEN_ENV) or None)
    if config.get("owner_pid"):
        app.on_startup.append(lambda app: _exit_with_owner(app, config["owner_pid"]))
    web.run_app(app, host=config["host"], port=config["port"], print=None)


async def _exit_with_owner(app: web.Application, owner_pid: int) -> None:
    """An embedded cluster's dashboard ends with the driver that started it, however that
    driver ends (SIGKILL included)."""

    async def watch() -> None:
        while True:
            try:
                os.kill(owner_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            await asyncio.sleep(1)

    app[_OWNER_WATCH] = asyncio.get_running_loop().create_task(watch())


if __name__ == "__main__":
    main()
