"""Property tests: no input produces a 5xx or a response that violates the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from ipgeo.settings import Settings
from ipgeo.web import create_app


@pytest.fixture(scope="module")
def fuzz_app(make_settings: Callable[..., Settings]) -> Flask:
    # A short DNS budget: random names go to the fake resolver, which answers NXDOMAIN.
    return create_app(make_settings(IPGEO_DNS_TIMEOUT="0.2", IPGEO_BATCH_LIMIT="50"))


def test_api_conforms_to_its_openapi_document(fuzz_app: Flask) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            # A schema cannot say which strings are IPs or domain names, so a 400 for a
            # schema-valid string is correct here; every other check applies.
            case.call_and_validate(
                excluded_checks=[positive_data_acceptance],
                environ_base={"REMOTE_ADDR": "81.2.69.142"},
            )

        check()


QUERIES = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80),
    st.from_regex(r"[a-z0-9-]{1,70}(\.[a-z0-9-]{1,70}){0,5}", fullmatch=True),
    st.ip_addresses().map(str),
    st.just("a" * 10_000),
    st.just("x" * 64 + ".test"),
    st.just("ex\x00ample.test"),
    st.just("..."),
    st.just("1.2.3.4.5"),
)


@given(query=QUERIES)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_lookup_never_fails_with_5xx(fuzz_app: Flask, query: str) -> None:
    client = fuzz_app.test_client()
    response = client.get("/api/v1/lookup/" + quote(query, safe=""))
    assert response.status_code < 500, (query, response.data[:300])
    body = response.get_json()
    if response.status_code == 200:
        assert "ip" in body
    else:
        assert set(body["error"]) == {"code", "message"}


@given(queries=st.lists(QUERIES, max_size=8), fields=st.sampled_from(["", "ip,city", "bogus"]))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_batch_never_fails_with_5xx(fuzz_app: Flask, queries: list[str], fields: str) -> None:
    client = fuzz_app.test_client()
    response = client.post(f"/api/v1/batch?fields={fields}", json=queries)
    assert response.status_code < 500
    if response.status_code == 200:
        assert len(response.get_json()) == len(queries)


@given(
    params=st.dictionaries(
        st.sampled_from(["ip", "lang", "fields", "format"]), st.text(max_size=40), max_size=4
    ),
    path=st.sampled_from(["/json", "/country", "/city", "/coordinates", "/asn", "/ip", "/"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_query_parameters_never_fail_with_5xx(
    fuzz_app: Flask, params: dict[str, str], path: str
) -> None:
    response = fuzz_app.test_client().get(path, query_string=params)
    assert response.status_code < 500, (path, params, response.data[:300])
