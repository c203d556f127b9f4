"""The soak's upstream: `tests/fakes/fake_provider.py` (OpenAI + Anthropic) answering every
generation after a fixed delay, on a free loopback port, until SIGTERM or SIGINT.

    .venv/bin/python -m bench.soak_upstream --delay-ms 20

Prints `fake provider listening on http://127.0.0.1:PORT` once it accepts requests.
"""

import argparse
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from tests.fakes.fake_provider import FakeProvider

LOG_EVERY_S = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay before each answer")
    args = parser.parse_args(argv)
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with FakeProvider(port=args.port) as fake:
        fake.set_delay(args.delay_ms / 1000)
        print(f"fake provider listening on {fake.url}", flush=True)
        # The fake keeps every request it saw (for tests): a few MB over a 10-minute soak,
        # in this process, which is not one of the Ray processes the soak measures.
        while not stopped.wait(timeout=LOG_EVERY_S):
            print(f"requests by path: {fake.stats()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
