"""The operations page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from isthmus_console.viewer import Viewer
from isthmus_console.web import page, render


@page
async def index(request: Request, viewer: Viewer) -> Response:
    return render(request, "operations/index.html")


routes: list[BaseRoute] = [Route("/operations", index)]
