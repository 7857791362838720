import asyncio
import threading

import pytest
from argon2 import PasswordHasher as Argon2
from argon2 import Type

from identity.accounts.passwords import HashingUnavailable, PasswordHasher, leave_hash_admission
from identity.settings import Argon2Params

# Cheap parameters: these tests are about behaviour, not cost.
CHEAP = Argon2Params(time_cost=1, memory_kib=64, parallelism=1)
OTHER = Argon2Params(time_cost=2, memory_kib=128, parallelism=1)


@pytest.fixture
def hasher():
    hasher = PasswordHasher(CHEAP, workers=1)
    yield hasher
    hasher.close()


async def test_hash_is_argon2id_with_the_configured_parameters(hasher):
    encoded = await hasher.hash("correct horse")
    assert encoded.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert Argon2().verify(encoded, "correct horse")


async def test_hashes_are_salted(hasher):
    assert await hasher.hash("same password") != await hasher.hash("same password")


async def test_verify_right_and_wrong_password(hasher):
    encoded = await hasher.hash("correct horse")
    right = await hasher.verify(encoded, "correct horse")
    assert (right.ok, right.needs_rehash) == (True, False)
    wrong = await hasher.verify(encoded, "correct horsE")
    assert (wrong.ok, wrong.needs_rehash) == (False, False)


async def test_unknown_user_is_checked_against_a_dummy_hash_and_fails(hasher):
    result = await hasher.verify(None, "anything")
    assert result.ok is False


@pytest.mark.parametrize("garbage", ["", "not a hash", "$argon2id$v=19$m=64,t=1,p=1$broken", "$2b$12$bcrypt"])
async def test_malformed_stored_hash_never_verifies(hasher, garbage):
    assert (await hasher.verify(garbage, "x")).ok is False


async def test_hash_with_other_parameters_verifies_and_asks_for_rehash(hasher):
    other = PasswordHasher(OTHER, workers=1)
    try:
        old = await other.hash("correct horse")
    finally:
        other.close()
    result = await hasher.verify(old, "correct horse")
    assert (result.ok, result.needs_rehash) == (True, True)
    assert (await hasher.verify(old, "wrong")).needs_rehash is False


def test_argon2i_hash_asks_for_rehash_to_argon2id():
    legacy = Argon2(time_cost=1, memory_cost=64, parallelism=1, type=Type.I).hash("pw")
    hasher = PasswordHasher(CHEAP, workers=1)
    try:
        result = asyncio.run(hasher.verify(legacy, "pw"))
    finally:
        hasher.close()
    assert (result.ok, result.needs_rehash) == (True, True)


def test_hash_sync_matches_the_async_parameters(hasher):
    assert hasher.hash_sync("pw").startswith("$argon2id$v=19$m=64,t=1,p=1$")


async def test_hashing_runs_in_the_worker_pool_not_on_the_event_loop(hasher, monkeypatch):
    threads: list[str] = []
    real = hasher._argon2

    class Spy:
        def hash(self, password):
            threads.append(threading.current_thread().name)
            return real.hash(password)

        def verify(self, encoded, password):
            threads.append(threading.current_thread().name)
            return real.verify(encoded, password)

        def check_needs_rehash(self, encoded):
            return real.check_needs_rehash(encoded)

    monkeypatch.setattr(hasher, "_argon2", Spy())
    encoded = await hasher.hash("pw")
    await hasher.verify(encoded, "pw")
    await hasher.verify(None, "pw")
    main = threading.current_thread().name
    assert len(threads) == 3
    assert all(name.startswith("argon2") and name != main for name in threads)


async def test_a_login_can_give_its_place_in_the_hash_queue_back_once():
    hasher = PasswordHasher(CHEAP, workers=1, queue=1)
    inside: list[None] = []
    done = asyncio.Event()

    async def other_login() -> None:
        async with hasher.admission():
            inside.append(None)
            await done.wait()

    async def both_inside() -> None:
        while len(inside) < 2:
            await asyncio.sleep(0.01)

    try:
        leave_hash_admission()  # none held: nothing happens
        async with hasher.admission() as slot:
            async with hasher.admission() as again:  # re-entrant in the task
                assert again is slot
            assert hasher.admitted == 1
            leave_hash_admission()  # e.g. before an email to a slow mail server
            leave_hash_admission()
            assert hasher.admitted == 0
            async with hasher.admission() as fresh:  # hashing again after leaving takes a new place
                assert fresh is not slot and hasher.admitted == 1
            others = [asyncio.create_task(other_login()) for _ in range(2)]  # both places are free for them
            await asyncio.wait_for(both_inside(), 5)
            assert hasher.admitted == 2
            with pytest.raises(HashingUnavailable):
                async with hasher.admission():
                    pass
            done.set()
            await asyncio.gather(*others)
        assert hasher.admitted == 0  # the end of the first admission gave nothing back twice
    finally:
        hasher.close()
