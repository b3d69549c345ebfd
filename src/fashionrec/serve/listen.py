"""The server's listening socket, bound before anything heavy loads: a port in use or a host that is not
this machine's is one error line at once, and "serving ..." is printed only for a socket that is bound.
uvicorn then serves on this socket (`uvicorn.Server.run(sockets=[...])`). Standard library only."""

from __future__ import annotations

import errno
import socket

from fashionrec.errors import UserError

BACKLOG = 2048  # uvicorn's default: connections the kernel queues while the server is busy or still loading


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free port the system picks), or a UserError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not a name or address this machine can listen on ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for closed connections
    try:
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise UserError(_why(e, host, port)) from None
    return sock


def _why(e: OSError, host: str, port: int) -> str:
    where = f"port {port} on {host}"
    if e.errno == errno.EADDRINUSE:
        return f"{where} is in use by another program; stop it or choose another --port"
    if e.errno == errno.EACCES:
        return f"{where} needs administrator rights (ports below 1024); choose another --port"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine"
    return f"cannot listen on {where}: {e.strerror}"


def url(sock: socket.socket) -> str:
    """The address a browser opens for this socket (its real port when 0 was asked for)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
