"""rate-limit (Python): at most `limit` calls of a tool per caller in each
window of `window_ms`, counted in Warden's per-plugin state, which every
session's instance of the plugin shares. Built with componentize-py.

Config (the `[config]` table of the plugin's `.toml`):
  limit      calls allowed per window (default 60)
  window_ms  window length in milliseconds (default 60000)
  tools      tool names to limit: exact names, `prefix*`, or `*` (default ["*"])
  per        what a counter belongs to: "caller" (the authenticated caller, else the
             session), "session", or "all" (one counter per tool for everyone)
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, state, types

KNOWN = {"limit", "window_ms", "tools", "per"}
settings = {"limit": 60, "window_ms": 60_000, "tools": ["*"], "per": "caller"}


def limited(tool: str) -> bool:
    for pattern in settings["tools"]:
        if pattern == "*" or pattern == tool or (pattern.endswith("*") and tool.startswith(pattern[:-1])):
            return True
    return False


def owner(ctx: types.Context) -> str:
    per = settings["per"]
    if per == "all":
        return "*"
    if per == "caller" and ctx.caller is not None:
        return "caller:" + ctx.caller.subject
    return "session:" + (ctx.session_id or "stdio")


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> types.Registration:
        try:
            given = json.loads(config or "{}")
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        unknown = set(given) - KNOWN
        if unknown:
            raise Err(f"unknown setting(s) {sorted(unknown)} (known: {sorted(KNOWN)})")
        settings.update(given)
        if not isinstance(settings["limit"], int) or settings["limit"] < 1:
            raise Err("limit must be a positive integer")
        if not isinstance(settings["window_ms"], int) or settings["window_ms"] < 1:
            raise Err("window_ms must be a positive integer")
        if settings["per"] not in ("caller", "session", "all"):
            raise Err('per must be "caller", "session" or "all"')
        return types.Registration(
            # Tool calls come from the client; the decision reads only the context
            # (`tool`, `caller`, `session_id`), never the message text.
            requests=types.Interest(
                methods=["tools/call"],
                directions=types.Directions.CLIENT_TO_SERVER,
                body=types.Body.CONTEXT_ONLY,
            ),
            # No responses: `on_response` is never called.
            responses=types.Interest(methods=[], directions=types.Directions(0), body=types.Body.CONTEXT_ONLY),
        )

    def on_request(self, ctx: types.Context, message: str) -> types.Verdict:
        tool = ctx.tool or ""
        if not limited(tool):
            return types.Verdict_Forward()
        who = owner(ctx)
        # The first call of a window creates the counter with the window as its lifetime.
        count = state.increment(f"{who}|{tool}", 1, settings["window_ms"])
        if count <= settings["limit"]:
            return types.Verdict_Forward()
        if count == settings["limit"] + 1:
            log.write(log.Level.WARN, f"{who} reached {settings['limit']} calls of {tool} in the window")
        data = json.dumps({"tool": tool, "limit": settings["limit"], "windowMs": settings["window_ms"]})
        error = types.RpcError(code=-32001, message=f"rate limit reached for {tool}", data=data)
        return types.Verdict_Reject(error)

    def on_response(self, ctx: types.Context, message: str) -> types.Verdict:
        return types.Verdict_Forward()
