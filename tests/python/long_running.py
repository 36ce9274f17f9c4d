"""server-everything's long-running operation through Warden with the official
Python SDK client, reporting the progress it saw. Usage: long_running.py URL MODE"""
import asyncio, json, sys
from mcp import Client
async def main(url, mode):
    prog = []
    async def on_progress(v, t, m): prog.append(v)
    async with Client(url, mode=mode) as c:
        tools = await c.list_tools()
        names = [t.name for t in tools.tools]
        r = await c.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress)
        print(json.dumps({"era": c.protocol_version, "progress": prog, "has": "trigger-long-running-operation" in names}))
asyncio.run(main(sys.argv[1], sys.argv[2]))
