"""Messages to the ComfyUI front end: progress text under a node, and named events for front-end extensions.

Standalone (or in a ComfyUI process without a server, e.g. tests) both are logged instead.
"""

from __future__ import annotations

import logging

from . import host

log = logging.getLogger("FlowAR")

SEARCH_TRACE_EVENT = "flowar.search.trace"  # one row of a reward search's trace: {"node", "item", "row"}


def progress_text(text: str, node_id: str | None) -> None:
    """Show ``text`` under the node ``node_id`` (ComfyUI's ``send_progress_text``)."""
    server = host.prompt_server()
    if server is None or node_id is None:
        log.info("%s", text)
        return
    server.send_progress_text(text, node_id)


def send_event(event: str, data: dict) -> None:
    """Send a JSON event (e.g. ``flowar.search.trace``) to the browser; front-end extensions listen by name."""
    server = host.prompt_server()
    if server is None:
        log.debug("%s %s", event, data)
        return
    server.send_sync(event, data)
