"""Routes of the operator's view: ``/ui`` (static files, no build step), ``/api/events``,
``/api/activity``, captures, model load, timeline and what-if replays.

Every route here is behind the API's auth middleware like any other (``apiKeys`` covers the UI,
the event stream and every ``/api`` route); the UI's login form only turns a session cookie back
into a key (see :mod:`llamaswap.daemon.uiauth`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from llamaswap.daemon.activity import Filters, to_csv
from llamaswap.daemon.errors import error_response
from llamaswap.daemon.whatif import WhatIfError, WhatIfRunner

if TYPE_CHECKING:
    from llamaswap.daemon.operator import OperatorView
    from llamaswap.daemon.server import Daemon

UI_DIR = Path(__file__).with_name("ui")


class WebUI:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.whatif = WhatIfRunner(daemon)

    @property
    def view(self) -> OperatorView:
        return self.daemon.operator

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(UI_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        return await self.view.events.stream(request, self.view.initial_events)

    async def activity(self, request: web.Request) -> web.StreamResponse:
        try:
            filters = Filters.parse(request.query)
        except ValueError as exc:
            return error_response(request, 400, f"/api/activity: {exc}")
        store = self.view.store
        if store is None:
            return error_response(request, 503, "the activity store is not open")
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(None, store.rows, filters)
        if request.query.get("format") == "csv":
            return web.Response(
                text=to_csv(rows),
                content_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="llamaswap-activity.csv"'},
            )
        stats = await loop.run_in_executor(None, store.stats, filters)
        return web.json_response({"rows": rows, "stats": stats, "dropped": store.dropped})

    async def capture(self, request: web.Request) -> web.StreamResponse:
        store = self.view.store
        try:
            row_id = int(request.match_info["id"])
        except ValueError:
            return error_response(request, 400, "invalid capture ID")
        found = None
        if store is not None:
            found = await asyncio.get_running_loop().run_in_executor(None, store.capture, row_id)
        if found is None:
            return error_response(request, 404, "capture not found")
        for key in ("req_headers", "resp_headers"):
            found[key] = json.loads(found[key] or "{}")
        for key in ("req_body", "resp_body"):
            found[key] = base64.b64encode(found[key]).decode() if found[key] is not None else None
        return web.json_response(found)

    async def model_state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.view.model_status())

    async def load(self, request: web.Request) -> web.StreamResponse:
        runtime = await self.daemon.current()
        name = request.match_info["model"]
        model_id = runtime.config.resolve(name)
        if model_id is None:
            return error_response(request, 404, f"model not found: {name!r}")
        runtime.host.submit(model_id, preload=True)
        return web.json_response({"msg": "loading", "model": model_id}, status=202)

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.view.timeline.snapshot())

    async def scheduler(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.view.scheduler_state())

    async def whatif_start(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return error_response(request, 400, "/api/whatif: the body must be JSON")
        if not isinstance(body, dict):
            return error_response(request, 400, "/api/whatif: the body must be a JSON object")
        try:
            job = self.whatif.start(body)
        except WhatIfError as exc:
            return error_response(request, exc.status, f"/api/whatif: {exc}")
        return web.json_response(job, status=202)

    async def whatif_get(self, request: web.Request) -> web.StreamResponse:
        job = self.whatif.get(request.match_info["id"])
        if job is None:
            return error_response(request, 404, "what-if job not found")
        return web.json_response(job)

    async def whatif_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.whatif.info())


def register(app: web.Application, daemon: Daemon) -> WebUI:
    ui = WebUI(daemon)
    add = app.router.add_route
    add("GET", "/", ui.root)
    add("GET", "/ui", ui.root)
    add("GET", "/ui/", ui.index)
    app.router.add_static("/ui/assets", UI_DIR, show_index=False, follow_symlinks=False)
    add("GET", "/api/events", ui.events)
    add("GET", "/api/activity", ui.activity)
    add("GET", "/api/captures/{id}", ui.capture)
    add("GET", "/api/models/state", ui.model_state)
    add("POST", "/api/models/load/{model:.+}", ui.load)
    add("GET", "/api/timeline", ui.timeline)
    add("GET", "/api/scheduler/queue", ui.scheduler)
    add("GET", "/api/whatif", ui.whatif_info)
    add("POST", "/api/whatif", ui.whatif_start)
    add("GET", "/api/whatif/{id}", ui.whatif_get)

    async def stop_whatif(_app: web.Application) -> None:
        await ui.whatif.close()

    app.on_shutdown.append(stop_whatif)
    return ui
