"""Drives Warden with the official Python MCP SDK (`mcp` on PyPI) and prints what it saw as JSON.

Usage: python client.py URL MODE [basic]   (MODE: legacy | auto; WARDEN_BEARER=TOKEN sends it)
       python client.py --stdio MODE [basic] -- COMMAND ARGS...   (a stdio server, e.g. `warden wrap --url`)
  basic: only what any server with echo/add/get_config/delete_everything/big/progress,
  mem://config and the prompt `p` has (tests/python/server.py); otherwise also the
  fixture's conversations (sampling, elicitation, roots, logging, cancellation).
"""

import asyncio
import json
import os
import sys

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters


async def main(server, mode: str, basic: bool) -> None:
    seen: dict = {"log": []}

    async def sampling(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="hi from python"), model="test"
        )

    async def logging(params):
        seen["log"].append(params.data)

    async def elicitation(context, params):
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])

    progress: list = []

    async def on_progress(value, total, message):
        progress.append(value)

    def text(result) -> str:
        return result.content[0].text

    async with Client(
        server,
        mode=mode,
        sampling_callback=sampling,
        logging_callback=logging,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
    ) as client:
        seen["era"] = client.protocol_version
        tools = await client.list_tools()
        seen["tools"] = sorted(t.name for t in tools.tools)
        seen["echo"] = text(await client.call_tool("echo", {"text": "hello"}))
        try:
            await client.call_tool("delete_everything", {})
            seen["denied"] = None
        except Exception as e:  # the SDK raises on a JSON-RPC error
            seen["denied"] = str(e)
        seen["redacted"] = text(await client.call_tool("get_config", {}))
        seen["progress_answer"] = text(await client.call_tool("progress", {}, progress_callback=on_progress))
        seen["progress"] = progress
        if not basic:
            seen["sampling"] = text(await client.call_tool("ask_client", {}))
            seen["notify"] = text(await client.call_tool("notify", {}))
            seen["elicitation"] = text(await client.call_tool("ask_elicitation", {}))
            seen["roots"] = text(await client.call_tool("ask_roots", {}))
            # A call the client gives up on: the server must hear of it.
            try:
                await asyncio.wait_for(client.call_tool("slow", {}), timeout=0.5)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
            seen["server_heard"] = text(await client.call_tool("client_notifications", {})).split(",")
        resource = await client.read_resource("mem://config")
        seen["resource"] = resource.contents[0].text
        prompt = await client.get_prompt("p", {})
        seen["prompt"] = prompt.messages[0].content.text
        big = await client.call_tool("big", {"bytes": 1 << 20})
        seen["big"] = len(text(big))
        sums = await asyncio.gather(*(client.call_tool("add", {"a": i, "b": 1}) for i in range(24)))
        seen["concurrent"] = [text(r) for r in sums]
    print(json.dumps(seen))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--stdio":
        dash = args.index("--")
        command, options = args[dash + 1 :], args[1:dash]
        target = StdioServerParameters(command=command[0], args=command[1:])
    else:
        target, options = args[0], args[1:]
        # A bearer token for the server (an OAuth access token), from the environment.
        bearer = os.environ.get("WARDEN_BEARER")
        if bearer:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
            target = streamable_http_client(target, http_client=http)
    asyncio.run(main(target, options[0], options[1:] == ["basic"]))
