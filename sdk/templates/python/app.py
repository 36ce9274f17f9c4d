"""{{name}}: a Warden plugin in Python. It denies the tools named in its
config and forwards everything else. Build: ./build.sh"""

import json

import wit_world
from wit_world.imports import log, types

deny: list = []


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> types.Registration:
        global deny
        deny = json.loads(config or "{}").get("deny", [])
        return types.Registration(
            # What reaches on_request.
            requests=types.Interest(
                # Exact method names, "prefix*", or "*"; [] for none.
                methods=["tools/call"],
                # Which ways: CLIENT_TO_SERVER, SERVER_TO_CLIENT, or both (|).
                directions=types.Directions.CLIENT_TO_SERVER | types.Directions.SERVER_TO_CLIENT,
                # CONTEXT_ONLY: `message` is empty (this plugin reads only ctx.tool);
                # WHOLE if on_request reads or rewrites the message text.
                body=types.Body.CONTEXT_ONLY,
            ),
            # What reaches on_response: nothing (no methods, no directions).
            responses=types.Interest(methods=[], directions=types.Directions(0), body=types.Body.CONTEXT_ONLY),
        )

    def on_request(self, ctx: types.Context, message: str) -> types.Verdict:
        if ctx.tool in deny:
            log.write(log.Level.INFO, f"denied {ctx.tool}")
            return types.Verdict_Reject(types.RpcError(code=-32001, message=f"{ctx.tool} is denied by {{name}}", data=None))
        return types.Verdict_Forward()

    def on_response(self, ctx: types.Context, message: str) -> types.Verdict:
        return types.Verdict_Forward()
