"""Slow and oversized input against the real server: bodies and headers beyond the limits, a trickled body, idle
and half-sent requests, 1,000 idle connections; memory and time stay bounded and a legitimate request still answers.

The server here runs with short HTTP deadlines (2 s, ``IDENTITY_HTTP_HEADER_TIMEOUT`` / ``_BODY_TIMEOUT``; 10 and
20 s by default) so that the test does not wait long; the time assertions have wide margins.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from identity.settings import EncryptionKeys
from tests.adversarial.conftest import PASSWORD, PUBLIC, email, start_target
from tests.e2e.conftest import IdentityServer, stop_and_check

DEADLINE = 2.0
IDLE_CONNECTIONS = 1_000


@pytest.fixture(scope="module")
def server(
    database_url: str,
    encryption_keys: EncryptionKeys,
    adversarial_tenant: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[IdentityServer]:
    _raise_fd_limit(IDLE_CONNECTIONS + 512)  # inherited by the server process
    started, _ = start_target(
        database_url,
        encryption_keys,
        tmp_path_factory.mktemp("slow-logs"),
        name="slow",
        IDENTITY_HTTP_HEADER_TIMEOUT=str(DEADLINE),
        IDENTITY_HTTP_BODY_TIMEOUT=str(DEADLINE),
    )
    try:
        yield started
    finally:
        stop_and_check(started)


def _raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def _connect(server: IdentityServer, timeout: float = 30) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_response(sock: socket.socket) -> bytes:
    """One response: its head, then as many body bytes as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")),
        0,
    )
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def _status_and_body(raw: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    parsed: dict[str, str] = json.loads(body)
    return status, parsed


def _rss_kib(server: IdentityServer) -> int:
    for line in Path(f"/proc/{server.process.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _password_grant_seconds(server: IdentityServer) -> float:
    started = time.monotonic()
    response = httpx.post(
        f"{server.base_url}/oauth/token",
        data={"grant_type": "password", "client_id": PUBLIC, "username": email("slow"), "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_bodies_beyond_the_limit_are_413_json(server: IdentityServer) -> None:
    url = f"{server.base_url}/oauth/token"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    big = httpx.post(url, content=b"a=" + b"x" * (1 << 20), headers=form, timeout=30)
    assert big.status_code == 413 and big.json()["error"] == "invalid_request", big.text
    # Chunked, with no Content-Length to refuse up front: cut once the limit is crossed.
    sock = _connect(server)
    sock.sendall(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n")
    sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        for _ in range(40):
            sock.sendall(b"2000\r\n" + b"x" * 0x2000 + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
    status, _ = _status_and_body(_read_response(sock))
    assert status == 413
    sock.close()
    for path in ("/mfa/challenge", "/oauth/revoke", "/mfa/associate", "/api/v2/users"):
        response = httpx.post(f"{server.base_url}{path}", content=b"{" + b" " * 200_000 + b"}", timeout=30)
        # Bearer endpoints check the token before they read the body: 401 without one, never the body's cost.
        expected = {413} if path.startswith(("/oauth", "/mfa/challenge")) else {401, 413}
        assert response.status_code in expected, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
    # A Content-Length far beyond the limit is refused from the header, without waiting for the body.
    sock = _connect(server)
    started = time.monotonic()
    sock.sendall(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    sock.sendall(b"Content-Length: 1000000000000\r\n\r\n{")
    status, body = _status_and_body(_read_response(sock))
    assert status == 413 and body["error"] == "invalid_request"
    assert time.monotonic() - started < DEADLINE
    sock.close()


def test_headers_beyond_the_limit_are_431_json(server: IdentityServer) -> None:
    for headers in (
        b"X-Big: " + b"a" * (1 << 20) + b"\r\n",  # one 1 MiB header
        b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 30) for n in range(2_000)),  # 2,000 small ones
        b"Authorization: Bearer " + b"e" * 40_000 + b"\r\n",  # a 40 KB token
    ):
        sock = _connect(server)
        # The server may close before it read everything: then its answer is already waiting.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /userinfo HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        status, body = _status_and_body(_read_all(sock))
        sock.close()
        assert status == 431 and body["error"] == "invalid_request", body
    long_url = httpx.get(f"{server.base_url}/userinfo?" + "q" * 40_000, timeout=30)
    assert long_url.status_code == 431
    assert httpx.get(f"{server.base_url}/healthz", timeout=30).status_code == 200


def test_trickled_and_half_sent_requests_are_cut_and_others_still_answer(server: IdentityServer) -> None:
    # A body trickling in a byte at a time.
    trickle = _connect(server)
    trickle.sendall(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n")
    trickle.sendall(b"Content-Length: 200\r\n\r\ngrant_type=pass")
    half_headers = _connect(server)
    half_headers.sendall(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Ty")
    silent = _connect(server)
    started = time.monotonic()
    legit = _password_grant_seconds(server)  # while all three hold their connections
    for _ in range(3):
        time.sleep(0.5)
        try:
            trickle.sendall(b"w")
        except OSError:
            break
    answers = {}
    for name, sock in (("trickled body", trickle), ("half-sent headers", half_headers), ("silent", silent)):
        raw = _read_all(sock)
        answers[name] = (round(time.monotonic() - started, 1), _status_and_body(raw)[0])
        sock.close()
    print("slow:", json.dumps({"answers": answers, "legitimate_grant_seconds": round(legit, 3)}))
    for name, (seconds, status) in answers.items():
        assert status == 408, name
        assert seconds < DEADLINE * 5, (name, seconds)  # cut by the deadline, not left open
    assert legit < 5, legit


def test_a_thousand_idle_connections_are_bounded_and_a_request_still_answers_fast(server: IdentityServer) -> None:
    limit = _raise_fd_limit(IDLE_CONNECTIONS + 512)
    count = min(IDLE_CONNECTIONS, limit - 200)
    before = _rss_kib(server)
    idle = [_connect(server) for _ in range(count)]
    try:
        time.sleep(0.3)
        with_idle = [_password_grant_seconds(server) for _ in range(3)]
        healthz_started = time.monotonic()
        assert httpx.get(f"{server.base_url}/healthz", timeout=30).status_code == 200
        healthz = time.monotonic() - healthz_started
        during = _rss_kib(server)
        # The header deadline closes every one of them.
        time.sleep(DEADLINE + 1.5)
        closed = 0
        for sock in idle:
            sock.settimeout(5)
            try:
                data = _read_all(sock)
            except OSError:
                data = b""
            closed += data.startswith(b"HTTP/1.1 408") or data == b""
    finally:
        for sock in idle:
            sock.close()
    after = _rss_kib(server)
    figures = {
        "idle_connections": count,
        "closed_by_deadline": closed,
        "password_grant_seconds_with_idle": [round(s, 3) for s in with_idle],
        "healthz_seconds_with_idle": round(healthz, 3),
        "rss_kib": {"before": before, "with_idle": during, "after": after},
    }
    print("idle:", json.dumps(figures))
    assert count >= 900, f"the file-descriptor limit allows only {count} connections"
    assert closed == count, figures
    assert max(with_idle) < 5 and healthz < 2, figures
    assert during - before < 100 * 1024, figures  # under ~100 KiB per connection
