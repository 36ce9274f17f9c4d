"""Drives a Warden gateway of three real servers (`everything`: server-everything,
`py`: tests/python/server.py, `fx`: the fixture) with the official Python SDK
client and prints what it saw as JSON.

Usage: python gateway_client.py URL MODE
       python gateway_client.py --stdio MODE -- COMMAND ARGS...   (`warden wrap --config`)
"""

import asyncio
import json
import sys

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters


async def main(server, mode: str) -> None:
    seen: dict = {}

    async def sampling(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="hi from python"), model="test"
        )

    def text(result) -> str:
        return result.content[0].text

    async with Client(server, mode=mode, sampling_callback=sampling) as client:
        seen["era"] = client.protocol_version
        tools = await client.list_tools()
        seen["tools"] = sorted(t.name for t in tools.tools)
        seen["everything_echo"] = text(await client.call_tool("everything__echo", {"message": "to everything"}))
        seen["py_echo"] = text(await client.call_tool("py__echo", {"text": "to py"}))
        seen["fx_echo"] = text(await client.call_tool("fx__echo", {"text": "to fx"}))
        # A sampling request from the fixture while the Python server is called.
        asked, added = await asyncio.gather(
            client.call_tool("fx__ask_client", {}), client.call_tool("py__add", {"a": 2, "b": 3})
        )
        seen["sampling"] = text(asked)
        seen["py_add"] = text(added)
        prompts = await client.list_prompts()
        seen["prompts"] = sorted(p.name for p in prompts.prompts)
        prompt = await client.get_prompt("py__p", {})
        seen["prompt"] = prompt.messages[0].content.text
        resources = await client.list_resources()
        seen["resources"] = sorted(str(r.uri) for r in resources.resources)
        read = await client.read_resource("mem://config")
        seen["resource"] = read.contents[0].text
        calls = [client.call_tool(f"{u}__echo", {"text": f"{u}-{i}"}) for i, u in enumerate(["py", "fx"] * 12)]
        seen["concurrent"] = [text(r) for r in await asyncio.gather(*calls)]
    print(json.dumps(seen))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--stdio":
        dash = args.index("--")
        command, options = args[dash + 1 :], args[1:dash]
        target = StdioServerParameters(command=command[0], args=command[1:])
    else:
        target, options = args[0], args[1:]
    asyncio.run(main(target, options[0]))
