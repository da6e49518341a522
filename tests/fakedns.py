"""A real UDP DNS server answering from a table: the one fake the test suite allows."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class FakeDnsServer:
    """Answers A/AAAA from ``records``; unknown names get NXDOMAIN; ``slow`` names (and their
    subdomains) never answer."""

    def __init__(self, records: dict[str, list[str]], slow: set[str] | None = None) -> None:
        self.records = {name.rstrip(".").lower(): addresses for name, addresses in records.items()}
        self.slow = slow or set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._running = True

    def start(self) -> FakeDnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        self.sock.close()

    def _serve(self) -> None:
        while self._running:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if name in self.slow or any(name.endswith(f".{slow}") for slow in self.slow):
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if name not in self.records:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                wanted = "A" if question.rdtype == dns.rdatatype.A else "AAAA"
                addresses = [a for a in self.records[name] if (":" in a) == (wanted == "AAAA")]
                if addresses and question.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    response.answer.append(
                        dns.rrset.from_text_list(question.name, 60, "IN", wanted, addresses)
                    )
            self.sock.sendto(response.to_wire(), addr)
