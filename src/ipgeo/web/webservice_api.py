"""MaxMind's GeoIP2 web service, ``/geoip/v2.1/{country,city,insights}/{ip|me}``.

A handler of the request pipeline (``ipgeo.web.pipeline``); ``ipgeo.webservice`` does the work.
"""

from __future__ import annotations

from flask import Flask

from ipgeo.formats import to_json
from ipgeo.geo import GeoService
from ipgeo.web.exchange import Answer, Exchange
from ipgeo.webservice import (
    ERROR_CONTENT_TYPE,
    WebServiceError,
    answer,
    check_credentials,
    content_type,
)

WEBSERVICE_PREFIX = "/geoip/v2.1"


class WebServiceApi:
    """The pipeline handler of one kind of answer (country, city or insights)."""

    def __init__(self, app: Flask, kind: str) -> None:
        self.kind = kind
        self.service: GeoService = app.extensions["ipgeo.geo"]
        self.accounts: tuple[tuple[str, str], ...] = app.extensions[
            "ipgeo.settings"
        ].webservice_accounts
        self.content_type = content_type(kind)

    def __call__(self, exchange: Exchange, args: dict[str, str]) -> Answer:
        """Answer for the address in the path (``me``: the caller), or MaxMind's error."""
        try:
            check_credentials(exchange.header("HTTP_AUTHORIZATION"), self.accounts)
            body = answer(self.service, self.kind, args["address"], exchange.client_ip)
        except WebServiceError as exc:
            return Answer(exc.status, exc.body(), ERROR_CONTENT_TYPE)
        return Answer(200, to_json(body), self.content_type)
