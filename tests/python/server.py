"""A real MCP server on the official Python SDK (`mcp` on PyPI), dual-era, for
Warden's upstream tests.

Usage: python server.py stdio | sse PORT | http PORT
  sse:  the old HTTP+SSE transport (2024-11-05) at /sse
  http: Streamable HTTP at /mcp, serving 2025 sessions and 2026-07-28 requests
"""

import sys

from mcp.server.mcpserver import Context, MCPServer

SECRET = "config loaded: OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123 aws=AKIAIOSFODNN7EXAMPLE"

server = MCPServer("python-upstream")


@server.tool()
def echo(text: str) -> str:
    """Echoes `text`."""
    return text


@server.tool()
def add(a: float, b: float) -> str:
    """Adds `a` and `b`."""
    return str(int(a + b)) if float(a + b).is_integer() else str(a + b)


@server.tool()
def get_config() -> str:
    """Returns configuration, secrets included."""
    return SECRET


@server.tool()
def delete_everything() -> str:
    """Something no agent should call."""
    return "everything deleted"


@server.tool()
def big(bytes: int) -> str:
    """Returns `bytes` bytes of text."""
    return "x" * bytes


@server.tool()
async def progress(ctx: Context) -> str:
    """Reports progress three times, then answers."""
    for step in (1, 2, 3):
        await ctx.report_progress(step, 3)
    return "progressed"


@server.resource("mem://config")
def config() -> str:
    """The configuration."""
    return SECRET


@server.prompt()
def p() -> str:
    """A prompt quoting the configuration."""
    return f"use this: {SECRET}"


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio":
        server.run()
    elif mode == "sse":
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
