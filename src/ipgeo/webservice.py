"""MaxMind's GeoIP2 web service (``/geoip/v2.1/{country,city,insights}/{ip|me}``), drop-in.

The official clients (``geoip2.webservice.Client`` and its peers in other languages) can be
pointed at ipgeo: answers are the database's record reshaped the way MaxMind's web service
sends it, errors carry MaxMind's codes, and credentials are HTTP basic auth. No Flask here:
the web layer's handler only passes the request's parts in and the answer out.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Mapping
from typing import Any

from ipgeo.formats import to_json
from ipgeo.geo import GeoService
from ipgeo.geo.addresses import network_text
from ipgeo.geo.database import place_values
from ipgeo.geo.queries import parse_ip, reserved_reason
from ipgeo.metrics import labelled

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Account = tuple[str, str]  # account id, license key

KINDS = ("country", "city", "insights")
# What each kind answers from the record; insights answers what city does.
COUNTRY_PARTS = ("continent", "country", "registered_country", "represented_country")
CITY_PARTS = (*COUNTRY_PARTS, "city", "location", "postal", "subdivisions")
# ipgeo counts no queries (rate limits answer 429 instead); clients read this as plenty.
QUERIES_REMAINING = 999_999_999
# The lookup metrics' result label of each error: the codes of ipgeo's own API.
_LOOKUP_RESULTS = {
    "IP_ADDRESS_INVALID": "invalid_query",
    "IP_ADDRESS_RESERVED": "reserved_address",
    "IP_ADDRESS_NOT_FOUND": "not_found",
}
ERROR_CONTENT_TYPE = "application/vnd.maxmind.com-error+json; charset=UTF-8; version=2.0"


def content_type(kind: str) -> str:
    """The content type of a successful answer of ``kind``, as MaxMind sends it."""
    return f"application/vnd.maxmind.com-{kind}+json; charset=UTF-8; version=1.0"


class WebServiceError(Exception):
    """An error answered with MaxMind's body ``{"code", "error"}`` and status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> bytes:
        """MaxMind's error body, serialized."""
        return to_json({"code": self.code, "error": self.message})


def check_credentials(authorization: str, accounts: tuple[Account, ...]) -> None:
    """Raise ``WebServiceError`` unless ``authorization`` (basic auth) names an account.

    Without configured accounts every request is accepted, like the rest of the open API.
    """
    if not accounts:
        return
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise WebServiceError(
            401, "ACCOUNT_ID_REQUIRED", "You have not supplied a MaxMind account ID."
        )
    try:
        account_id, colon, key = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        account_id, colon, key = "", "", ""
    granted = False
    for known_id, known_key in accounts:  # compare with every account: no early exit
        same = hmac.compare_digest(account_id.encode(), known_id.encode())
        same &= hmac.compare_digest(key.encode(), known_key.encode())
        granted |= same and bool(colon)
    if not granted:
        raise WebServiceError(
            401,
            "AUTHORIZATION_INVALID",
            "You have supplied an invalid MaxMind account ID and/or license key in the "
            "Authorization header.",
        )


def _address(text: str, client: IPAddress | None) -> IPAddress:
    """The address asked for: ``me`` is the client."""
    ip = client if text == "me" else parse_ip(text) if text.strip() == text else None
    if ip is None:
        raise WebServiceError(
            400, "IP_ADDRESS_INVALID", f"The value '{text}' is not a valid IP address."
        )
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if reserved_reason(ip) is not None:
        raise WebServiceError(
            404, "IP_ADDRESS_RESERVED", f"The value {ip} belongs to a reserved or private range."
        )
    return ip


def answer(service: GeoService, kind: str, text: str, client: IPAddress | None) -> dict[str, Any]:
    """The web service's answer of ``kind`` for address ``text`` (``me``: ``client``)."""
    try:
        ip = _address(text, client)
        version, number = ip.version, int(ip)
        generation = service.current()  # one generation for the record, its network and ASN
        prefix = generation.find(version, number)[1]
        record = generation.city.record(ip)
        if not record:
            raise WebServiceError(
                404, "IP_ADDRESS_NOT_FOUND", f"The address {ip} is not in our database."
            )
    except WebServiceError as exc:
        labelled("lookups", _LOOKUP_RESULTS[exc.code]).inc()
        raise
    labelled("lookups", "found").inc()
    parts = COUNTRY_PARTS if kind == "country" else CITY_PARTS
    body = reshape(record, parts)
    traits: dict[str, Any] = dict(_mapping(record.get("traits")))
    if kind != "country":
        asn, organisation = generation.asn_of(version, number)
        if asn is not None:
            traits["autonomous_system_number"] = asn
        if organisation is not None:
            traits["autonomous_system_organization"] = organisation
    traits["ip_address"] = str(ip)
    traits["network"] = network_text(version, number, prefix)
    body["traits"] = traits
    body["maxmind"] = {"queries_remaining": QUERIES_REMAINING}
    return body


def reshape(record: Mapping[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    """The ``parts`` of a City record in MaxMind's web-service form.

    A record in MaxMind's layout (GeoIP2, GeoLite2, DB-IP) already has that form and is
    passed on as the database holds it (names in every language, geoname ids, ...); other
    layouts give what ipgeo reads from them, names in English.
    """
    if any(isinstance(record.get(part), (dict, list)) for part in (*CITY_PARTS, "traits")):
        body: dict[str, Any] = {}
        for part in parts:
            value = record.get(part)
            if part == "subdivisions":
                if isinstance(value, list) and value:
                    body[part] = [dict(_mapping(item)) for item in value]
            elif isinstance(value, Mapping) and value:
                body[part] = dict(value)
        return body
    return {key: value for key, value in _from_place(record).items() if key in parts}


def _from_place(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record of another layout (IPinfo lite, flat ones) through ipgeo's place values."""
    (continent, continent_code, country, iso, eu, region, region_code, city, postal,
     latitude, longitude, radius, zone) = place_values(record, ("en",))[:13]  # fmt: skip
    body: dict[str, Any] = {
        "continent": _drop_none(code=continent_code, names=_names(continent)),
        "country": _drop_none(iso_code=iso, names=_names(country), is_in_european_union=eu or None),
        "city": _drop_none(names=_names(city)),
        "postal": _drop_none(code=postal),
        "location": _drop_none(
            latitude=latitude, longitude=longitude, accuracy_radius=radius, time_zone=zone
        ),
    }
    subdivision = _drop_none(iso_code=region_code, names=_names(region))
    if subdivision:
        body["subdivisions"] = [subdivision]
    return {key: value for key, value in body.items() if value}


def _names(name: str | None) -> dict[str, str] | None:
    return {"en": name} if name else None


def _drop_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
