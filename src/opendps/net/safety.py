"""What the server may fetch or call on a user's behalf (DESIGN §11).

One policy, built from the settings, used by input validation at submit, by the
downloads at localize, by OGC callbacks and by registration hrefs:

- schemes: with auth on, file inputs are ``http``, ``https`` or ``s3`` only (local files
  only with ``allow_local_inputs``), and ``s3`` only from ``allowed_s3_buckets``;
- addresses: unless ``allow_private_urls``, no loopback, private, link-local or otherwise
  non-public address, checked for every request actually sent, redirects included (an
  httpx request hook). The name is resolved just before the request; a name that
  resolves to a public address at the check and a private one at connect time (DNS
  rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from opendps.errors import InvalidInput
from opendps.net.urls import redact, scheme_of

if TYPE_CHECKING:
    from opendps.settings import Settings

REMOTE_SCHEMES = frozenset({"http", "https", "s3"})
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class UnsafeUrl(InvalidInput):
    """This URL is not allowed on this server."""


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs users may make the server reach. The default allows everything."""

    schemes: frozenset[str] | None = None  # None: any scheme
    local_files: bool = True  # file:// and absolute paths
    s3_buckets: frozenset[str] | None = None  # None: any bucket
    private_addresses: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        if not settings.auth:
            schemes = None
            buckets = None
        else:
            schemes = REMOTE_SCHEMES
            listed = frozenset(settings.allowed_s3_buckets)
            buckets = None if "*" in listed else listed
        return cls(
            schemes=schemes,
            local_files=settings.local_inputs_allowed,
            s3_buckets=buckets,
            private_addresses=settings.private_urls_allowed,
        )

    # -- file inputs ----------------------------------------------------------------------

    def check_input(self, url: str, input_name: str) -> None:
        """A file input's URL, before anything is fetched (submit and localize)."""
        scheme = scheme_of(url)
        shown = redact(url)
        if scheme == "file":
            if not self.local_files:
                raise UnsafeUrl(
                    f"input {input_name!r}: local files ({shown!r}) are not allowed on this "
                    "server; give an http(s) or s3 URL"
                )
            return
        if self.schemes is not None and scheme not in self.schemes:
            raise UnsafeUrl(
                f"input {input_name!r}: {scheme}:// URLs are not allowed on this server "
                f"({shown!r}); give an http(s) or s3 URL"
            )
        if scheme in ("s3", "s3a") and self.s3_buckets is not None:
            bucket = urlsplit(url).netloc
            if bucket not in self.s3_buckets:
                raise UnsafeUrl(
                    f"input {input_name!r}: the s3 bucket {bucket!r} is not one this server "
                    "reads inputs from"
                )
        if scheme in ("http", "https"):
            self.check_host_literal(url, f"input {input_name!r}")

    # -- addresses ------------------------------------------------------------------------

    def check_host_literal(self, url: str, what: str) -> None:
        """Refuse loopback/private IP literals and ``localhost`` without resolving names
        (cheap enough for every job of a batch; requests check the resolved address)."""
        if self.private_addresses:
            return
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if host in LOCAL_NAMES or host.endswith(".localhost"):
            raise UnsafeUrl(f"{what}: {redact(url)!r} names this machine; not allowed here")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        if not is_public(address):
            raise UnsafeUrl(f"{what}: {redact(url)!r} is a private address; not allowed here")

    def check_request_url(self, url: str, what: str) -> None:
        """Before a request is sent: http(s) only, and a public address unless allowed."""
        if scheme_of(url) not in ("http", "https"):
            raise UnsafeUrl(f"{what}: {redact(url)!r} is not an http or https URL")
        if self.private_addresses:
            return
        self.check_host_literal(url, what)
        host = urlsplit(url).hostname or ""
        for address in resolve(host):
            if not is_public(address):
                raise UnsafeUrl(
                    f"{what}: {redact(url)!r} resolves to the private address {address}; "
                    "not allowed here"
                )

    def request_hook(self, what: str) -> Callable[[httpx.Request], None]:
        """An httpx ``request`` event hook: every request (each redirect too) is checked."""

        def hook(request: httpx.Request) -> None:
            self.check_request_url(str(request.url), what)

        return hook

    def client(self, what: str, **options: object) -> httpx.Client:
        """An httpx client whose every request, redirects included, obeys this policy."""
        return httpx.Client(event_hooks={"request": [self.request_hook(what)]}, **options)  # type: ignore[arg-type]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` resolves to; an unresolvable name has none (the request fails)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
