"""`python -m lab.nodes.relay NETNS_PID TARGET_HOST:PORT PORT_FILE`: the host's one way into a lab.

The real lab's control plane lives in its own network namespace (the "hub" every node is wired to),
so nothing of the lab touches the machine's own network. Tests, `kubectl` and the lab's simulators
reach the API server through this relay: it listens on 127.0.0.1 of the *host* namespace (a free port,
written to PORT_FILE), then moves itself into the hub's network namespace (setns), so every
connection it opens to TARGET lands there. A socket keeps the namespace it was created in, which is
why the listening socket is bound before the move. Bytes are copied unchanged (TLS stays end to end).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000


def setns_net(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into the network namespace of pid {pid}")
    finally:
        os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listener: socket.socket, host: str, port: int) -> None:
    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    netns_pid, target, port_file = int(argv[0]), argv[1], argv[2]
    host, port = target.rsplit(":", 1)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    setns_net(netns_pid)  # from here on, new sockets belong to the hub's namespace
    with open(port_file + ".partial", "w") as out:
        out.write(str(listener.getsockname()[1]))
    os.replace(port_file + ".partial", port_file)
    asyncio.run(serve(listener, host, int(port)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
