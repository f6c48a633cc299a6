"""An SMTP sink in its own process for the delivery benchmarks: accepts and discards.

``python -m benchmarks.smtp_sink`` prints the port it listens on, then serves until
its standard input closes.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from aiosmtpd.controller import Controller


class Discard:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def main() -> None:
    # aiosmtpd checks its server by connecting to the port it was given, so port 0
    # ("any") cannot be passed through: take a free port first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    controller.stop()


if __name__ == "__main__":
    main()
