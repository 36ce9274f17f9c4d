"""Calls a tool that waits until cancelled, gives up on it after half a second,
then makes one more call so the cancellation has surely been sent.
Usage: cancel.py URL MODE TOOL OTHER_TOOL"""
import asyncio
import json
import sys

from mcp import Client


async def main(url, mode, slow, other):
    async with Client(url, mode=mode) as client:
        try:
            await asyncio.wait_for(client.call_tool(slow, {}), timeout=0.5)
            gave_up = False
        except (asyncio.TimeoutError, TimeoutError):
            gave_up = True
        after = await client.call_tool(other, {})
        print(json.dumps({"era": client.protocol_version, "gave_up": gave_up, "after": after.content[0].text}))


asyncio.run(main(*sys.argv[1:5]))
