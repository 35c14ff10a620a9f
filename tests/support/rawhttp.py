"""A minimal HTTP/1.1 client that keeps reading while it writes.

Needed for oversized bodies: a server may answer ``413`` and close before the body is sent, and
httpx (like most clients) only reads the response after writing the whole request, so it fails
with a write/read error instead of returning the status. Here one thread writes (ignoring write
errors after the server gave up) while the caller's thread reads the response.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _parse(buf: bytes, eof: bool) -> RawResponse | None:
    """A complete response from ``buf``, or ``None`` if more bytes are needed."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = buf[:head_end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    rest = buf[head_end + 4 :]
    if "content-length" in headers:
        n = int(headers["content-length"])
        return RawResponse(status, headers, rest[:n]) if len(rest) >= n else None
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, pos = b"", 0
        while True:
            line_end = rest.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(rest[pos:line_end].split(b";")[0], 16)
            if size == 0:
                return RawResponse(status, headers, body)
            if len(rest) < line_end + 2 + size + 2:
                return None
            body += rest[line_end + 2 : line_end + 2 + size]
            pos = line_end + 2 + size + 2
    return RawResponse(status, headers, rest) if eof else None


def post(
    url: str,
    chunks: Iterable[bytes],
    headers: dict[str, str],
    chunked: bool = False,
    timeout: float = 60.0,
) -> RawResponse:
    """POST the body given as ``chunks`` (``Transfer-Encoding: chunked`` if ``chunked``, else the
    caller supplies ``content-length``) and return the response, even if the server stops
    reading the body early."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    all_headers = {"host": f"{host}:{port}", "connection": "close", **headers}
    if chunked:
        all_headers["transfer-encoding"] = "chunked"
    head = (
        f"POST {path} HTTP/1.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
        + "\r\n"
    )

    sock = socket.create_connection((host, port), timeout=timeout)

    def write() -> None:
        try:
            sock.sendall(head.encode("latin-1"))
            for chunk in chunks:
                if chunked:
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    sock.sendall(chunk)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading (e.g. after answering 413)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    buf = b""
    try:
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            parsed = _parse(buf + data, eof=not data)
            if parsed is not None:
                return parsed
            if not data:
                raise ConnectionError(f"connection closed before a full response: {buf[:200]!r}")
            buf += data
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        writer.join(timeout=timeout)
