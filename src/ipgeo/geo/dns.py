"""Resolving domain names (A and AAAA) and addresses (PTR) with dnspython."""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Protocol

from ipgeo.geo.errors import Unresolvable

if TYPE_CHECKING:
    import dns.resolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class HostResolver(Protocol):
    """Turns names into addresses and back."""

    def resolve(self, name: str) -> list[IPAddress]:
        """Return every A and AAAA address of ``name``; raise ``Unresolvable``."""
        ...

    def reverse(self, ip: IPAddress) -> str | None:
        """Return the PTR name of ``ip``, or ``None``."""
        ...


class DnsResolver:
    """A stub resolver with one total time budget per name (A and AAAA together)."""

    def __init__(self, timeout: float = 2.0, servers: tuple[tuple[str, int], ...] = ()) -> None:
        self.timeout = timeout
        self._servers = servers
        self._resolver: dns.resolver.Resolver | None = None

    def _get(self) -> dns.resolver.Resolver:
        # dnspython is imported on first use: most runs (bulk, plain IP lookups) never need it.
        import dns.nameserver
        import dns.resolver

        if self._resolver is None:
            try:
                resolver = dns.resolver.Resolver(configure=not self._servers)
            except dns.resolver.NoResolverConfiguration:
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = ["127.0.0.1"]
            if self._servers:
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(host, port) for host, port in self._servers
                ]
            resolver.use_search_by_default = False
            resolver.cache = dns.resolver.LRUCache(4096)
            self._resolver = resolver
        return self._resolver

    def resolve(self, name: str) -> list[IPAddress]:
        """Return every A and AAAA address of ``name``; raise ``Unresolvable``."""
        import dns.exception
        import dns.resolver

        resolver = self._get()
        deadline = time.monotonic() + self.timeout
        addresses: list[IPAddress] = []
        problems: list[str] = []
        for rdtype in ("A", "AAAA"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problems.append("timeout")
                break
            try:
                answer = resolver.resolve(name + ".", rdtype, lifetime=remaining, search=False)
            except dns.resolver.NXDOMAIN:
                raise Unresolvable(f"the domain {name} does not exist") from None
            except dns.resolver.NoAnswer:
                continue
            except dns.exception.Timeout:
                problems.append("timeout")
                continue
            except (dns.resolver.NoNameservers, dns.exception.DNSException) as exc:
                problems.append(type(exc).__name__)
                continue
            addresses.extend(ipaddress.ip_address(rr.address) for rr in answer)
        if addresses:
            return addresses
        if "timeout" in problems:
            raise Unresolvable(f"the domain {name} could not be resolved in {self.timeout:g} s")
        if problems:
            raise Unresolvable(f"the domain {name} could not be resolved (DNS servers failed)")
        raise Unresolvable(f"the domain {name} has no A or AAAA records")

    def reverse(self, ip: IPAddress) -> str | None:
        """Return the PTR name of ``ip``, or ``None``."""
        import dns.exception
        import dns.reversename

        try:
            answer = self._get().resolve(
                dns.reversename.from_address(str(ip)), "PTR", lifetime=self.timeout
            )
        except dns.exception.DNSException:
            return None
        return str(answer[0].target).rstrip(".") or None
