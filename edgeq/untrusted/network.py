"""Nothing edgeq runs may reach the network: a process-wide guard, installed by the CLI for every command and by
the worker protocol's child in every toolchain worker (edgeq/toolchains/child.py loads this file by its path: it
is standard library only), under which every connection, datagram or name lookup for a host off this machine
raises `NetworkRefused` and is remembered, so the CLI can name it in one line even when a library wrapped the
error in its own (Ultralytics' "Download failure", requests' ConnectionError).

Loopback and Unix sockets stay allowed: they do not leave the machine. Code that talks to the network from C
(not through Python's socket module) is not covered; the tests run the checkpoint case with the network
namespace removed (`unshare -n`) as well.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

_ATTEMPTS: list[str] = []  # "host:port (by module)", in order
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkRefused(ConnectionRefusedError):
    """A connection edgeq's guard refused (an OSError, so libraries treat it as any failed connection)."""


def refuse_network() -> None:
    """Install the guard (idempotent)."""
    if getattr(socket.socket.connect, "_edgeq_guard", False):
        return
    connect, connect_ex, sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address, *args, **kwargs):
        _check_address(self.family, address)
        return connect(self, address, *args, **kwargs)

    def guarded_connect_ex(self, address, *args, **kwargs):
        _check_address(self.family, address)
        return connect_ex(self, address, *args, **kwargs)

    def guarded_sendto(self, data, *args):
        _check_address(self.family, args[-1])
        return sendto(self, data, *args)

    def guarded_getaddrinfo(host, port, *args, **kwargs):
        _check_host(host, port)
        return getaddrinfo(host, port, *args, **kwargs)

    for guarded in (guarded_connect, guarded_connect_ex, guarded_sendto, guarded_getaddrinfo):
        guarded._edgeq_guard = True
    socket.socket.connect, socket.socket.connect_ex = guarded_connect, guarded_connect_ex
    socket.socket.sendto, socket.getaddrinfo = guarded_sendto, guarded_getaddrinfo


def refused_attempts() -> list[str]:
    """What the guard refused since `forget_attempts` (the start of the command), first first."""
    return list(_ATTEMPTS)


def forget_attempts() -> None:
    _ATTEMPTS.clear()


def _check_address(family: int, address: Any) -> None:
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        _check_host(address[0], address[1])


def _check_host(host: Any, port: Any) -> None:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or str(host).lower() in _LOCAL_NAMES or _is_loopback(str(host)):
        return
    where = f"{host}:{port}" if port not in (None, 0, "") else str(host)
    _ATTEMPTS.append(f"{where} (by {_caller()})")
    raise NetworkRefused(f"edgeq refused a network connection to {where}: nothing is downloaded at run time")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _caller() -> str:
    """The first module outside the socket and HTTP plumbing that asked, e.g. ultralytics.utils.downloads."""
    plumbing = ("socket", "ssl", "http.", "urllib", "requests", "edgeq.untrusted.network", "selectors",
                "encodings", "asyncio")
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "?")
        if not module.startswith(plumbing) and module not in ("http", "urllib3"):
            return module
        frame = frame.f_back
    return "?"
