"""CPU per request of the plain chat path inside the ingress (no Ray, no network).

The real FastAPI app (`tests/serve_app/app_factory.py`) over fake handles that answer at
once, driven in-process over ASGI: what it measures is the ingress's own work on a plain
`/v1/chat/completions` (and `/v1/messages`) request: validation, admission, the wire
params, response shaping, middleware. Compare two trees by running it from each (the
`PYTHONPATH` of the other tree first):

    python -m bench.chat_path_cpu --requests 3000 --rounds 5
"""

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.serve_app.app_factory import MODEL_ID, build_gateway_app

BODIES = {
    "/v1/chat/completions": {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}]},
    "/v1/messages": {
        "model": MODEL_ID,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    },
}


async def one_round(client: httpx.AsyncClient, path: str, requests: int) -> float:
    """CPU milliseconds per request over `requests` sequential requests."""
    body = BODIES[path]
    started = time.process_time()
    for _ in range(requests):
        response = await client.post(path, json=body)
        assert response.status_code == 200, response.text
    return (time.process_time() - started) * 1000 / requests


async def main(requests: int, rounds: int) -> None:
    built = build_gateway_app(Path(tempfile.mkdtemp()), auth=False)
    transport = httpx.ASGITransport(app=built.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for path in BODIES:
            await one_round(client, path, 200)  # warm up
            figures = [await one_round(client, path, requests) for _ in range(rounds)]
            print(f"{path}: median {statistics.median(figures):.3f} CPU ms/request {figures}")
    await built.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
