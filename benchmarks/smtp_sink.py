"""An SMTP sink in its own process for the delivery benchmarks: accepts and discards.

``python -m benchmarks.smtp_sink`` prints the port it listens on, then serves until
its standard input closes.
"""

from __future__ import annotations

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
    controller = Controller(Discard(), hostname="127.0.0.1", port=0)
    controller.start()
    server = controller.server
    port = server.sockets[0].getsockname()[1] if server is not None else controller.port
    print(port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    controller.stop()


if __name__ == "__main__":
    main()
