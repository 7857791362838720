"""50 concurrent refreshes of ONE refresh token against ONE real ``identity serve`` (issue 6, "Concurrency").

Run on SQLite by default and on PostgreSQL with ``IDENTITY_TEST_DATABASE_URL``. The requests are fired together from
``httpx.AsyncClient`` (``asyncio.gather``) over 50 connections opened beforehand, each holding back the last byte of
its body until all 50 got that far, so that they reach the server together. How many then really overlap on the
database is bounded by the server's connection pool (SQLAlchemy's defaults: 15 on SQLite, 20 on PostgreSQL); a probe
in the server process counts what its refresh-token store did, and the counts are printed with the answers.

What the implementation guarantees (``identity/tokens/refresh.py``): a conditional ``UPDATE ... WHERE used_at IS
NULL`` picks one winner, whose successor row is inserted in the same transaction.

- ``leeway = 0``: exactly one request wins and gets a successor (200); every other one answers ``403 invalid_grant``
  and revokes the family (reuse detected), so afterwards the winner's successor is refused too: the family is dead.
- ``leeway = 30``: every request gets 200 and the SAME successor; the successor then rotates normally.

Either way no request gets a 5xx, and the stored rows are whole: one row per token handed out, each used row has
exactly one child, no parent has two. The outcome counts are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.e2e.conftest import query, verify_access_token
from tests.e2e.refresh_support import (
    RACE,
    RACE_LEEWAY,
    RITA,
    RT_API,
    UNKNOWN,
    RefreshTenant,
    check_family_shape,
    client_form,
    family_rows,
    login,
    refresh,
    refresh_server,
    token_hash,
)

CONCURRENCY = 50
ROUNDS = 3

# A probe loaded into the server process (as ``sitecustomize``, through PYTHONPATH) that only observes: it wraps the
# store's methods, calls them unchanged and appends one line per call to a file, so that the test can tell how many
# requests really contended on the conditional UPDATE and how many were turned away because they already saw the
# token used. Behaviour is unchanged; identity/ is not touched.
PROBE = """\
import os

_LOG = os.environ.get("REFRESH_RACE_PROBE")
if _LOG:
    from identity.tokens import refresh as _refresh

    _store = _refresh.SqlRefreshTokens

    def _note(event):
        with open(_LOG, "a") as log:
            log.write(event + "\\n")

    def _wrap(name, describe):
        original = getattr(_store, name)

        async def wrapper(self, *args, **kwargs):
            result = await original(self, *args, **kwargs)
            _note(f"{name}:{describe(result)}")
            return result

        setattr(_store, name, wrapper)

    _wrap("find", lambda s: "none" if s is None else "revoked" if s.revoked else "newest" if s.newest else "used")
    _wrap("rotate", lambda r: "won" if r is not None else "lost")
    _wrap("successor_within_leeway", lambda r: "hit" if r is not None else "miss")
    _wrap("revoke_family", lambda r: "done")
"""


@dataclass(frozen=True)
class Race:
    tenant: RefreshTenant
    probe_log: Path

    def probe(self) -> Counter[str]:
        """What the server's store did since the last call."""
        events = Counter(self.probe_log.read_text().split()) if self.probe_log.exists() else Counter()
        self.probe_log.write_text("")
        return events


@pytest.fixture(scope="module")
def rt_race(database_url: str, e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    """ONE server (one worker, no rules) on the refresh tenant, with the observing probe."""
    workdir = tmp_path_factory.mktemp("refresh-race")
    probe_dir = workdir / "probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(PROBE)
    probe_log = workdir / "probe.log"
    pythonpath = os.pathsep.join(filter(None, [str(probe_dir), e2e_env.get("PYTHONPATH")]))
    server_env = {"PYTHONPATH": pythonpath, "REFRESH_RACE_PROBE": str(probe_log)}
    with refresh_server(
        "refresh-race", e2e_env, database_url, workdir, with_rule=False, server_env=server_env
    ) as tenant:
        yield Race(tenant, probe_log)


@pytest.fixture
def rt(rt_race: Race) -> RefreshTenant:
    return rt_race.tenant


async def _race(base_url: str, client_id: str, token: str) -> tuple[list[tuple[int, dict[str, Any]]], float]:
    """CONCURRENCY refreshes of ``token`` at once; the answers and the seconds they took.

    The connections are opened first. Each request then sends its headers and all of its body but the last byte, and
    waits until every request got that far; only then do all the last bytes go out. The server thus receives the
    CONCURRENCY requests complete within a moment of each other, not one after the other as a sequential client
    would deliver them.
    """
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    body = urlencode({"grant_type": "refresh_token", "refresh_token": token, **client_form(client_id)}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(body))}
    gate = asyncio.Event()
    waiting = 0

    async def held_back() -> AsyncIterator[bytes]:
        nonlocal waiting
        yield body[:-1]
        waiting += 1
        if waiting == CONCURRENCY:
            gate.set()
        await gate.wait()
        yield body[-1:]

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as client:
        await asyncio.gather(*(client.get("/healthz") for _ in range(CONCURRENCY)))  # open the connections
        started = time.perf_counter()
        responses = await asyncio.gather(
            *(client.post("/oauth/token", content=held_back(), headers=headers) for _ in range(CONCURRENCY))
        )
        elapsed = time.perf_counter() - started
    answers = []
    for response in responses:
        try:
            answer = response.json()
        except ValueError:
            answer = {"text": response.text[:200]}
        answers.append((response.status_code, answer))
    return answers, elapsed


def race(rt: RefreshTenant, client_id: str) -> tuple[str, list[tuple[int, dict[str, Any]]], Counter[str], float]:
    """One round: a fresh family, then the concurrent refreshes of its first token; the outcome, counted."""
    token = login(rt.server, RITA, client_id=client_id)["refresh_token"]
    answers, elapsed = asyncio.run(_race(rt.server.base_url, client_id, token))
    outcomes: Counter[str] = Counter()
    for status, body in answers:
        outcomes[f"{status} {body.get('error', 'ok')}" if status != 200 else "200 successor"] += 1
    return token, answers, outcomes, elapsed


def report(label: str, round_: int, outcomes: Counter[str], elapsed: float, extra: str = "") -> None:
    counted = ", ".join(f"{count} x {outcome}" for outcome, count in sorted(outcomes.items()))
    print(f"\n[race {label} round {round_}] {CONCURRENCY} concurrent refreshes in {elapsed:.2f}s: {counted}{extra}")


def describe(store: Counter[str]) -> str:
    """The probe's counts in words."""
    return (
        f"find(): {store['find:newest']} unused, {store['find:used']} used, {store['find:revoked']} revoked "
        f"(each rotate() loser looks again); rotate(): {store['rotate:won']} won, "
        f"{store['rotate:lost']} lost; leeway: {store['successor_within_leeway:hit']} hit, "
        f"{store['successor_within_leeway:miss']} miss; family revocations: {store['revoke_family:done']}"
    )


def check_probe(store: Counter[str]) -> None:
    """Every request was seen by the probe, and exactly one conditional UPDATE won."""
    finds = sum(count for event, count in store.items() if event.startswith("find:"))
    assert finds == CONCURRENCY + store["rotate:lost"], store
    assert store["find:none"] == 0, store
    assert store["rotate:won"] == 1, store


def test_without_leeway_one_request_wins_and_the_reuse_kills_the_family(rt: RefreshTenant, rt_race: Race) -> None:
    totals: Counter[str] = Counter()
    for round_ in range(1, ROUNDS + 1):
        rt_race.probe()
        token, answers, outcomes, elapsed = race(rt, RACE)
        store = rt_race.probe()
        totals.update(outcomes)
        assert all(status < 500 for status, _ in answers), answers
        winners = [body for status, body in answers if status == 200]
        losers = [body for status, body in answers if status != 200]
        assert all(status in (200, 403) for status, _ in answers), outcomes
        assert all(body == UNKNOWN for body in losers), outcomes
        # The first rotation always commits before anyone can see the token as used: exactly one winner.
        assert len(winners) == 1, outcomes
        successor = winners[0]["refresh_token"]
        claims = verify_access_token(rt.server, winners[0]["access_token"], audience=RT_API)
        assert claims["gty"] == "refresh_token"

        # The losers detected reuse: the family is dead, the winner's successor with it.
        after = refresh(rt.server, successor, client_id=RACE)
        assert (after.status_code, after.json()) == (403, UNKNOWN)
        rows = family_rows(rt.database_url, token)
        check_family_shape(rows)
        assert [row["token_hash"] for row in rows] == [token_hash(token), token_hash(successor)]
        assert all(row["revoked_at"] is not None for row in rows), rows
        assert {row["revoked_reason"] for row in rows} == {"reuse"}
        assert all(row["successor"] is None for row in rows)
        check_probe(store)
        report("leeway=0", round_, outcomes, elapsed, "; afterwards the successor is refused (family revoked)")
        print(f"  server side: {describe(store)}")
    assert totals == {"200 successor": ROUNDS, "403 invalid_grant": ROUNDS * (CONCURRENCY - 1)}


def test_within_leeway_every_request_gets_the_same_successor(rt: RefreshTenant, rt_race: Race) -> None:
    totals: Counter[str] = Counter()
    for round_ in range(1, ROUNDS + 1):
        rt_race.probe()
        token, answers, outcomes, elapsed = race(rt, RACE_LEEWAY)
        store = rt_race.probe()
        totals.update(outcomes)
        assert all(status < 500 for status, _ in answers), answers
        assert all(status == 200 for status, _ in answers), outcomes
        successors = Counter(body["refresh_token"] for _, body in answers)
        assert len(successors) == 1, f"{len(successors)} different successors: {sorted(successors.values())}"
        (successor,) = successors
        assert successor != token
        jtis = {verify_access_token(rt.server, body["access_token"], audience=RT_API)["jti"] for _, body in answers}
        assert len(jtis) == CONCURRENCY  # each request got its own access token

        rows = family_rows(rt.database_url, token)
        check_family_shape(rows)
        assert [row["token_hash"] for row in rows] == [token_hash(token), token_hash(successor)]
        assert all(row["revoked_at"] is None for row in rows), rows
        check_probe(store)
        assert store["revoke_family:done"] == 0, store
        assert store["successor_within_leeway:hit"] == CONCURRENCY - 1, store

        # The successor works afterwards, and rotates as usual.
        after = refresh(rt.server, successor, client_id=RACE_LEEWAY)
        assert after.status_code == 200, after.text
        third = after.json()["refresh_token"]
        assert third not in (token, successor)
        rows = family_rows(rt.database_url, token)
        check_family_shape(rows)
        assert [row["token_hash"] for row in rows] == [token_hash(token), token_hash(successor), token_hash(third)]
        assert all(row["revoked_at"] is None for row in rows), rows
        report("leeway=30", round_, outcomes, elapsed, "; all the same successor, which then rotates")
        print(f"  server side: {describe(store)}")
    assert totals == {"200 successor": ROUNDS * CONCURRENCY}


def test_nothing_is_left_half_written_anywhere(rt: RefreshTenant) -> None:
    """After one more race of each kind, every family in the table is whole (every module's, not just the races')."""
    for client_id in (RACE, RACE_LEEWAY):
        _, answers, _, _ = race(rt, client_id)
        assert all(status < 500 for status, _ in answers)
    rows = query(rt.database_url, "SELECT family_id, id, parent_id, used_at, token_hash FROM refresh_token ORDER BY id")
    families: dict[str, list[dict[str, Any]]] = {}
    for family_id, id_, parent_id, used_at, hashed in rows:
        families.setdefault(family_id, []).append(
            {"id": id_, "parent_id": parent_id, "used_at": used_at, "token_hash": hashed}
        )
    for family in families.values():
        check_family_shape(family)
    print(f"\n[race] {len(rows)} refresh-token rows in {len(families)} families, all whole")
    orphans = query(
        rt.database_url,
        "SELECT c.id FROM refresh_token c LEFT JOIN refresh_token p ON p.id = c.parent_id "
        "WHERE c.parent_id IS NOT NULL AND (p.id IS NULL OR p.family_id <> c.family_id)",
    )
    assert orphans == []
    shared = query(
        rt.database_url,
        "SELECT parent_id FROM refresh_token WHERE parent_id IS NOT NULL GROUP BY parent_id HAVING COUNT(*) > 1",
    )
    assert shared == []


# --- Reuse detection and revocation racing the legitimate refresh ---------------------------------------------

OFFSETS_MS = [i * 0.5 for i in range(40)]  # 0 to 19.5 ms: sweeps the second request across the rotation


async def _rotation_race(
    base_url: str, client_id: str, newest: str, retired: str, offset: float, second: str
) -> tuple[httpx.Response, httpx.Response]:
    """The holder of ``newest`` refreshes it; ``offset`` seconds later the retired token is replayed (a stolen copy)
    or sent to ``/oauth/revoke`` (the user signs the device out)."""
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as client:
        await asyncio.gather(client.get("/healthz"), client.get("/healthz"))
        grant = {"grant_type": "refresh_token", "refresh_token": newest, **client_form(client_id)}

        async def late() -> httpx.Response:
            await asyncio.sleep(offset)
            if second == "replay":
                form = {"grant_type": "refresh_token", "refresh_token": retired, **client_form(client_id)}
                return await client.post("/oauth/token", data=form)
            return await client.post("/oauth/revoke", data={"token": retired, **client_form(client_id)})

        legit, other = await asyncio.gather(client.post("/oauth/token", data=grant), late())
    return legit, other


@pytest.mark.parametrize("second", ["replay", "revoke"])
def test_a_family_killed_during_a_rotation_stays_dead(rt: RefreshTenant, second: str) -> None:
    """Reuse detection and revocation must not depend on timing: when the family is revoked (a retired token is
    replayed, or ``/oauth/revoke`` is called) while the holder of the newest token is rotating it, the family must end
    up dead, the successor issued in the meantime included."""
    outcomes: Counter[str] = Counter()
    survivors = []
    for offset_ms in OFFSETS_MS:
        t0 = login(rt.server, RITA, client_id=RACE)["refresh_token"]
        t1 = refresh(rt.server, t0, client_id=RACE).json()["refresh_token"]
        legit, other = asyncio.run(_rotation_race(rt.server.base_url, RACE, t1, t0, offset_ms / 1000, second))
        assert legit.status_code < 500 and other.status_code < 500, (legit.text, other.text)
        if second == "replay":
            assert (other.status_code, other.json()) == (403, UNKNOWN)
        else:
            assert (other.status_code, other.content) == (200, b"")
        if legit.status_code != 200:
            assert (legit.status_code, legit.json()) == (403, UNKNOWN)
            outcomes[f"{second} first: the rotation lost, family dead"] += 1
            continue
        t2 = legit.json()["refresh_token"]
        after = refresh(rt.server, t2, client_id=RACE)
        rows = family_rows(rt.database_url, t0)
        check_family_shape(rows)
        if after.status_code == 200:
            outcomes[f"BUG: the rotation's successor survived the {second}"] += 1
            survivors.append((offset_ms, [(row["id"], row["revoked_reason"]) for row in rows]))
        else:
            assert (after.status_code, after.json()) == (403, UNKNOWN)
            outcomes[f"rotation first: successor issued, then revoked by the {second}"] += 1
    print(f"\n[{second} during rotation] {len(OFFSETS_MS)} rounds: {dict(outcomes)}")
    assert not survivors, (
        f"the successor outlived the {second} of its family in {len(survivors)} of {len(OFFSETS_MS)} rounds "
        f"(offset ms, [(row id, revoked_reason)] after one more refresh of the successor): {survivors}"
    )
