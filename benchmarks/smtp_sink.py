"""An SMTP sink in its own process for the delivery benchmarks: accepts and discards.

``python -m benchmarks.smtp_sink`` prints the port it listens on, then serves until
its standard input closes. It speaks just enough SMTP for our client (EHLO/HELO,
MAIL, RCPT, DATA, RSET, NOOP, QUIT) and finds the end of a message with one search for
``CRLF.CRLF`` instead of parsing it, so the benchmark measures the sender, not the
sink. (aiosmtpd, used by the tests, parses every line in Python and saturated its core
before one worker did.)
"""

from __future__ import annotations

import asyncio
import sys
import threading

EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 52428800\r\n"


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 sink ESMTP\r\n")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(EHLO)
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 OK\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                writer.write(b"250 OK\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def _serve(ready: threading.Event, port: list[int], stop: asyncio.Event) -> None:
    server = await asyncio.start_server(_session, "127.0.0.1", 0, limit=64 * 1024 * 1024)
    port.append(server.sockets[0].getsockname()[1])
    ready.set()
    async with server:
        await stop.wait()


def main() -> None:
    loop = asyncio.new_event_loop()
    ready, port, stop = threading.Event(), list[int](), asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(_serve(ready, port, stop),), daemon=True
    )
    thread.start()
    ready.wait()
    print(port[0], flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
