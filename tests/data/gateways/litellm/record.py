"""Records litellm-<version>.prom: the Prometheus exposition of the real LiteLLM library's own
PrometheusLogger (callbacks=["prometheus"], litellm/integrations/prometheus.py) after real requests
over HTTP to a minimal OpenAI-compatible backend that answers with a fixed `usage`.

    python -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install litellm==1.110.2 prometheus_client
    LITELLM_LOCAL_MODEL_COST_MAP=True /tmp/litellm-venv/bin/python tests/data/gateways/litellm/record.py \
        > tests/data/gateways/litellm/litellm-1.110.2.prom

The team, key and user identity goes in the request metadata as the LiteLLM proxy sets it
(user_api_key_team_id, user_api_key_team_alias, ...). Requests: team "search" calls Llama by the
engine's name, team "support" calls Qwen by a gateway alias (`qwen-32b`), and one key without a team.
"""

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
         "prompt_tokens_details": {"cached_tokens": 400}}


class Backend(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = json.dumps({"id": "cmpl-1", "object": "chat.completion", "created": 1764547200, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "ok"}}],
                           "usage": USAGE}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


REQUESTS = [  # (model as the gateway names it, metadata the proxy would attach)
    ("meta-llama/Llama-3.1-8B-Instruct", {"user_api_key_team_id": "team-a-id", "user_api_key_team_alias": "search",
                                          "user_api_key_alias": "search-key", "user_api_key_hash": "h-search",
                                          "user_api_key_user_id": "u1"}),
    ("qwen-32b", {"user_api_key_team_id": "team-b-id", "user_api_key_team_alias": "support",
                  "user_api_key_alias": "support-key", "user_api_key_hash": "h-support", "user_api_key_user_id": "u2"}),
    ("qwen-32b", {"user_api_key_alias": "no-team-key", "user_api_key_hash": "h-none"}),
]


async def main(port: int) -> None:
    import litellm

    litellm.callbacks = ["prometheus"]
    for model, metadata in REQUESTS:
        await litellm.acompletion(model=f"hosted_vllm/{model}", api_base=f"http://127.0.0.1:{port}/v1",
                                  messages=[{"role": "user", "content": "hi"}], metadata=metadata)
    await asyncio.sleep(2)  # the logger runs after the response


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    asyncio.run(main(server.server_port))
    from prometheus_client import REGISTRY, generate_latest

    sys.stdout.write(generate_latest(REGISTRY).decode())
