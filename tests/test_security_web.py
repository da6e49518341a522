"""Who may do what, and bounded request bodies, against a real ``ipgeo serve``, Redis and worker.

Issue 16, items 2 (Unicode download names), 3 (multipart parts), 5 (chunked batch bodies),
9 (CSRF on the job routes), 10 (private jobs) and 12 (dashboard password guessing).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from ipgeo.jobs.worker import start_worker_process, stop_worker
from tests.servers import AppServer, Nginx, RedisServer
from tests.test_redis_acceptance import server_env

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

DASHBOARD = ("jobs-admin", "s3cret-pass")
BATCH_LIMIT = 10
BATCH_BODY_LIMIT = BATCH_LIMIT * 512 + 4096
IPS = b"8.8.8.8\n81.2.69.142\n"


@dataclass
class Stack:
    app: AppServer
    redis: RedisServer
    data_dir: Path

    @property
    def url(self) -> str:
        return self.app.url

    def submit(self, body: bytes = IPS, **kwargs: Any) -> requests.Response:
        params = kwargs.pop("params", {"name": "ips.txt"})
        return requests.post(
            f"{self.url}/api/v1/jobs", params=params, data=body, timeout=30, **kwargs
        )

    def wait_ended(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            state = requests.get(f"{self.url}/api/v1/jobs/{job_id}", timeout=10).json()
            if state["status"] in {"finished", "failed", "canceled"}:
                return dict(state)
            assert time.monotonic() < deadline, state
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("security-web")
    server = RedisServer(tmp).start()
    data_dir = tmp / "data"
    env = server_env(
        data_dir,
        IPGEO_REDIS_URL=server.url,
        IPGEO_BATCH_LIMIT=str(BATCH_LIMIT),
        IPGEO_RATE_LIMIT="100000/minute",  # the rate-limit stage reads batch bodies too
        IPGEO_DASHBOARD_USER=DASHBOARD[0],
        IPGEO_DASHBOARD_PASSWORD=DASHBOARD[1],
        IPGEO_JOB_PROGRESS_INTERVAL="0.05",
    )
    app = AppServer(env, tmp / "app.log", workers=2).start()
    worker = start_worker_process(server.url, env, (tmp / "worker.log").open("wb"))
    try:
        yield Stack(app, server, data_dir)
    finally:
        stop_worker(worker, os.getpid())
        app.stop()
        server.stop()


# -- item 2: Unicode upload names ------------------------------------------------------------


def test_a_unicode_upload_name_downloads_with_an_rfc6266_name(stack: Stack) -> None:
    created = stack.submit(params={"name": "日本.txt"})
    assert created.status_code == 202, created.text
    assert created.json()["input"]["name"] == "日本.txt"
    assert stack.wait_ended(created.json()["id"])["status"] == "finished"
    result = requests.get(f"{stack.url}/api/v1/jobs/{created.json()['id']}/result", timeout=10)
    assert result.status_code == 200, result.text
    disposition = result.headers["Content-Disposition"]
    assert disposition == (
        "attachment; filename=\"upload-ipgeo.csv\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC-ipgeo.csv"
    )
    assert "8.8.8.8" in result.text


def test_quotes_and_control_characters_never_reach_the_download_name(stack: Stack) -> None:
    created = stack.submit(params={"name": 'a"b\r\n\x07c; x=1.txt'})
    assert created.status_code == 202, created.text
    assert stack.wait_ended(created.json()["id"])["status"] == "finished"
    result = requests.get(f"{stack.url}/api/v1/jobs/{created.json()['id']}/result", timeout=10)
    assert result.status_code == 200
    disposition = result.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    name = disposition.removeprefix('attachment; filename="').removesuffix('"')
    assert name.endswith("-ipgeo.csv")
    assert not any(char in name for char in '"\r\n\x07;\\')


# -- item 3: multipart bodies with many parts -------------------------------------------------


def _leftovers(data_dir: Path) -> list[Path]:
    return [path for path in (data_dir / "jobs").rglob("part-*")]


def test_a_multipart_body_of_thousands_of_parts_is_413_and_leaves_no_part_files(
    stack: Stack,
) -> None:
    boundary = "xXxBOUNDARYxXx"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{index}"; '
        f'filename="f{index}.txt"\r\nContent-Type: text/plain\r\n\r\n1.1.1.1\r\n'
        for index in range(3000)
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    response = requests.post(
        f"{stack.url}/api/v1/jobs",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert response.status_code == 413, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert "parts" in error["message"]
    assert _leftovers(stack.data_dir) == []
    # The server still works, and an ordinary form still does.
    form = requests.post(
        f"{stack.url}/api/v1/jobs", files={"file": ("ips.txt", IPS)}, data={"mode": "unique"}
    )
    assert form.status_code == 202, form.text
    assert _leftovers(stack.data_dir) == []


def test_many_small_form_fields_are_413(stack: Stack) -> None:
    fields = {f"x{index}": "1" for index in range(500)}
    response = requests.post(
        f"{stack.url}/api/v1/jobs", files={"file": ("ips.txt", IPS)}, data=fields, timeout=30
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"


# -- item 5: batch bodies are bounded in bytes, whatever the framing --------------------------


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_batch_body_past_the_limit_is_413(stack: Stack) -> None:
    # One query padded with whitespace: valid JSON, but far more bytes than 10 queries need.
    padded = b'["8.8.8.8"' + b" " * (8 << 20) + b"]"
    response = requests.post(f"{stack.url}/api/v1/batch", data=_chunks(padded), timeout=60)
    assert response.status_code == 413, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "too_large"
    assert "IPGEO_BATCH_LIMIT" in error["message"]
    declared = requests.post(f"{stack.url}/api/v1/batch", data=padded, timeout=60)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "too_large"


def test_a_chunked_batch_body_within_the_limit_is_answered(stack: Stack) -> None:
    body = b'["8.8.8.8"' + b" " * (BATCH_BODY_LIMIT - 11) + b"]"
    assert len(body) == BATCH_BODY_LIMIT
    response = requests.post(f"{stack.url}/api/v1/batch", data=_chunks(body, 1000), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()[0]["country_iso"] == "US"
    over = requests.post(f"{stack.url}/api/v1/batch", data=_chunks(body + b" ", 1000), timeout=30)
    assert over.status_code == 413


# -- item 9: cross-site requests to the job routes --------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Referer", "https://evil.example/page"),
    ],
)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"],
)
def test_cross_site_job_submissions_are_refused(
    stack: Stack, header: str, value: str, content_type: str
) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n8.8.8.8\r\n--b--\r\n'
    response = stack.submit(
        body if content_type.startswith("multipart") else b"text=8.8.8.8",
        headers={header: value, "Content-Type": content_type},
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "cross_origin"


def test_the_origin_check_compares_the_scheme(stack: Stack) -> None:
    host = stack.url.removeprefix("http://")
    # The same host and port over another scheme is another origin (the page form too).
    other_scheme = stack.submit(headers={"Origin": f"https://{host}"})
    assert other_scheme.status_code == 403, other_scheme.text
    page = requests.post(
        f"{stack.url}/jobs",
        data={"text": "8.8.8.8"},
        headers={"Origin": f"https://{host}"},
        allow_redirects=False,
        timeout=10,
    )
    assert page.status_code == 403
    same = stack.submit(headers={"Origin": stack.url, "Content-Type": "text/plain"})
    assert same.status_code == 202, same.text
    referred = stack.submit(headers={"Referer": f"{stack.url}/jobs"})
    assert referred.status_code == 202, referred.text


def test_behind_a_trusted_proxy_the_public_scheme_counts(stack: Stack) -> None:
    """gunicorn believes X-Forwarded-Proto from loopback (its ``forwarded_allow_ips``)."""
    host = stack.url.removeprefix("http://")
    proxied = {"X-Forwarded-Proto": "https"}
    public = stack.submit(headers={**proxied, "Origin": f"https://{host}"})
    assert public.status_code == 202, public.text
    cookie = public.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    downgraded = stack.submit(headers={**proxied, "Origin": f"http://{host}"})
    assert downgraded.status_code == 403, downgraded.text


@pytest.mark.skipif(not shutil.which("nginx"), reason="needs nginx")
def test_behind_nginx_that_drops_the_port_the_browser_flow_works(
    stack: Stack, tmp_path: Path
) -> None:
    """nginx passes ``Host $host``, without the port the browser used: scheme and host count."""
    with Nginx(tmp_path / "nginx", stack.url, "") as proxy:
        host = proxy.url.removeprefix("http://")
        page = requests.post(
            f"{proxy.url}/api/v1/jobs",
            files={"file": ("ips.txt", IPS)},
            headers={"Origin": proxy.url, "Referer": f"{proxy.url}/jobs"},
            timeout=10,
        )
        assert page.status_code == 202, page.text
        for origin in (
            f"https://{host}",
            "http://evil.example",
            f"http://evil.example:{proxy.port}",
        ):
            refused = requests.post(
                f"{proxy.url}/api/v1/jobs", data=IPS, headers={"Origin": origin}, timeout=10
            )
            assert refused.status_code == 403, (origin, refused.text)


def test_tools_without_origin_keep_working(stack: Stack) -> None:
    raw = stack.submit()
    assert raw.status_code == 202, raw.text
    form = requests.post(f"{stack.url}/api/v1/jobs", files={"file": ("ips.txt", IPS)}, timeout=10)
    assert form.status_code == 202, form.text


def test_a_cross_site_delete_is_refused_even_with_the_token(stack: Stack) -> None:
    job = stack.submit().json()
    response = requests.delete(
        f"{stack.url}/api/v1/jobs/{job['id']}",
        headers={"X-Job-Token": job["owner_token"], "Origin": "https://evil.example"},
        timeout=10,
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "cross_origin"


# -- item 10: jobs belong to the owner token ------------------------------------------------


def _listed(stack: Stack, **headers: str) -> list[str]:
    response = requests.get(f"{stack.url}/api/v1/jobs", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


def test_a_job_belongs_to_its_owner_token(stack: Stack) -> None:
    created = stack.submit()
    assert created.status_code == 202
    mine = created.json()
    token = mine["owner_token"]
    assert len(token) >= 43
    assert created.headers["X-Job-Token"] == token
    cookie = created.headers["Set-Cookie"]
    assert f"ipgeo_jobs={token}" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert len(mine["id"]) == 32 and int(mine["id"], 16) >= 0
    theirs = stack.submit().json()  # another client, behind the same address
    assert theirs["owner_token"] != token

    assert mine["id"] in _listed(stack, **{"X-Job-Token": token})
    assert theirs["id"] not in _listed(stack, **{"X-Job-Token": token})
    assert mine["id"] in _listed(stack, Authorization=f"Bearer {token}")
    assert mine["id"] in _listed(stack, Cookie=f"ipgeo_jobs={token}")
    assert _listed(stack) == []  # no token, no list (whatever the address)
    page = requests.get(f"{stack.url}/jobs", cookies={"ipgeo_jobs": token}, timeout=10)
    assert f"/jobs/{mine['id']}" in page.text and f"/jobs/{theirs['id']}" not in page.text
    assert f"/jobs/{mine['id']}" not in requests.get(f"{stack.url}/jobs", timeout=10).text

    # A new job sent with the token joins the same owner.
    again = stack.submit(headers={"X-Job-Token": token}).json()
    assert again["owner_token"] == token
    assert {mine["id"], again["id"]} <= set(_listed(stack, **{"X-Job-Token": token}))

    # Reading by id stays a capability link.
    assert requests.get(f"{stack.url}/api/v1/jobs/{theirs['id']}", timeout=10).status_code == 200

    # Only the owner deletes.
    url = f"{stack.url}/api/v1/jobs/{theirs['id']}"
    assert requests.delete(url, timeout=10).status_code == 403
    refused = requests.delete(url, headers={"X-Job-Token": token}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_owner"
    stack.wait_ended(theirs["id"])
    done = requests.delete(url, headers={"Authorization": f"Bearer {theirs['owner_token']}"})
    assert done.status_code == 204, done.text
    unknown = requests.delete(f"{stack.url}/api/v1/jobs/{'0' * 32}", timeout=10)
    assert unknown.status_code == 404

    # Redis holds a hash of the token, never the token.
    client = stack.redis.client()
    for key in client.keys("*"):
        kind = client.type(key)
        dump = client.dump(key) or b""
        assert token.encode() not in dump, (key, kind)
        assert token.encode() not in key


# -- item 12: dashboard password guessing ---------------------------------------------------


def test_failed_dashboard_logins_are_limited_and_the_right_password_never(stack: Stack) -> None:
    url = f"{stack.url}/admin/rq/"
    assert requests.get(url, timeout=10).status_code == 401  # no credentials: not a guess
    statuses = [
        requests.get(url, auth=(DASHBOARD[0], f"guess-{index}"), timeout=10).status_code
        for index in range(8)
    ]
    assert statuses[:5] == [401] * 5, statuses
    assert statuses[5:] == [429] * 3, statuses
    for _ in range(10):  # the right password is let in at once, and never counted
        assert requests.get(url, auth=DASHBOARD, timeout=10).status_code == 200
    assert requests.get(url, auth=("root", "x"), timeout=10).status_code == 429
