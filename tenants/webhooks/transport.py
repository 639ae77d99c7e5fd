"""The HTTP request of one attempt: the address checked (SSRF), connected to by IP, short timeouts, no redirects.

The host is resolved here, every address it resolves to is checked, and the connection goes to a checked
address (with the URL's host in the Host header and, for HTTPS, in SNI and the certificate check), so a DNS
answer cannot change between the check and the connection. Private, loopback, link-local, multicast,
reserved and unspecified addresses are refused unless WEBHOOKS_ALLOW_PRIVATE is on.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

from portal.kernel import ApplicationError

EXCERPT_BYTES = 1024
USER_AGENT = "metering-portal-webhooks/1"


class AddressRefused(ApplicationError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def _refused_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, label in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                             ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                             ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attribute):
            return label
    if not ip.is_global:  # shared address space (100.64/10) and the like
        return "not public"
    return None


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL, or ApplicationError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApplicationError("A webhook URL is an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise ApplicationError("A webhook URL may not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ApplicationError("The webhook URL's port is not a number from 1 to 65535.") from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, when every one may be reached; else AddressRefused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"The host {host} does not resolve ({exc}).") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not settings.WEBHOOKS_ALLOW_PRIVATE:
        for address in addresses:
            reason = _refused_reason(ipaddress.ip_address(address.split("%")[0]))
            if reason:
                raise AddressRefused(
                    f"The host {host} resolves to {address}, a {reason} address: webhooks are sent to public "
                    f"addresses only (WEBHOOKS_ALLOW_PRIVATE)."
                )
    return addresses


def check_url(url: str) -> None:
    """On save: the URL's shape, and its host's addresses."""
    _scheme, host, port, _path = split_url(url)
    checked_addresses(host, port)


@dataclass
class Answer:
    status_code: int | None
    excerpt: str
    latency_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` once; never raises for a network problem (it is the answer's error)."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        scheme, host, port, path = split_url(url)
        address = checked_addresses(host, port)[0]
    except ApplicationError as exc:
        return Answer(None, "", elapsed(), exc.message)
    timeout = urllib3.Timeout(connect=settings.WEBHOOKS_CONNECT_TIMEOUT, read=settings.WEBHOOKS_READ_TIMEOUT)
    common = {"port": port, "timeout": timeout, "retries": False, "maxsize": 1}
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, server_hostname=host, assert_hostname=host, **common)
    else:
        pool = urllib3.HTTPConnectionPool(address, **common)
    host_header = host if port in (80, 443) else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port in (80, 443) else f"[{host}]:{port}"
    request_headers = {"Host": host_header, "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        response = pool.urlopen("POST", path, body=body, headers=request_headers, redirect=False, retries=False,
                                preload_content=False, assert_same_host=False)
        try:
            excerpt = response.read(EXCERPT_BYTES, decode_content=False)
        finally:
            response.release_conn()
            response.close()
        return Answer(response.status, excerpt.decode("utf-8", "replace"), elapsed())
    except urllib3.exceptions.HTTPError as exc:
        kind = "timed out" if isinstance(exc, (urllib3.exceptions.TimeoutError,)) else "failed"
        return Answer(None, "", elapsed(), f"The request {kind}: {type(exc).__name__}: {exc}"[:500])
    except OSError as exc:
        return Answer(None, "", elapsed(), f"The connection failed: {exc}"[:500])
    finally:
        pool.close()
