"""Drives Warden over the old HTTP+SSE transport (2024-11-05) with the official
Python SDK's `sse_client` and prints what it saw as JSON.

Usage: python sse_client.py URL   (URL: the SSE endpoint, e.g. http://127.0.0.1:8080/sse)
"""

import asyncio
import json
import sys

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client


async def main(url: str) -> None:
    seen: dict = {}

    async def sampling(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="hi over sse"), model="test"
        )

    def text(result) -> str:
        return result.content[0].text

    async with sse_client(url) as (read, write):
        async with ClientSession(read, write, sampling_callback=sampling) as session:
            init = await session.initialize()
            seen["server"] = init.server_info.name
            tools = await session.list_tools()
            seen["tools"] = sorted(t.name for t in tools.tools)
            seen["echo"] = text(await session.call_tool("echo", {"text": "over sse"}))
            try:
                await session.call_tool("delete_everything", {})
            except Exception as e:  # a JSON-RPC error
                seen["denied"] = str(e)
            seen["sampling"] = text(await session.call_tool("ask_client", {}))
            seen["redacted"] = text(await session.call_tool("get_config", {}))
            sums = await asyncio.gather(*(session.call_tool("add", {"a": i, "b": 1}) for i in range(8)))
            seen["concurrent"] = [text(r) for r in sums]
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
