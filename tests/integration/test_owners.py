"""registry/owners.py against a real Redis: learn, look up, ambiguity, expiry of sessions and reservations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from registry.keys import RegistryKeys
from registry.owners import (
    EXPIRING_MAX,
    LEARN_BATCH,
    RESERVATION_GRACE,
    SESSION_TTL,
    OwnerFact,
    OwnerIndex,
    OwnerKind,
    day_of,
    forget_at,
    parse_owners,
    token_key,
)
from routing.model import PartyKey

pytestmark = pytest.mark.integration

CPO_A, CPO_B = PartyKey("NL", "ABC"), PartyKey("BE", "BEC")
MSP = PartyKey("DE", "MSP")
DAY = 86_400.0


@pytest.fixture
def index(redis: Redis, keys: RegistryKeys) -> OwnerIndex:
    return OwnerIndex(redis, keys)


def shifted(redis: Redis, keys: RegistryKeys, seconds: float) -> OwnerIndex:
    """The same index as seen by a process whose clock is ``seconds`` ahead (negative: behind)."""
    return OwnerIndex(redis, keys, clock=lambda: time.time() + seconds)


# -- pure parts -----------------------------------------------------------------------------------------------


def test_keys_are_case_insensitive_and_tokens_carry_their_type() -> None:
    assert token_key("abc123", "RFID") == "RFID:ABC123"
    assert token_key("abc123", "APP_USER") != token_key("abc123", "RFID")


def test_facts_are_bounded() -> None:
    with pytest.raises(ValueError, match="printable"):
        OwnerFact(OwnerKind.LOCATION, "x" * 65, CPO_A)
    with pytest.raises(ValueError, match="printable"):
        OwnerFact(OwnerKind.LOCATION, "", CPO_A)
    with pytest.raises(ValueError, match="printable"):
        OwnerFact(OwnerKind.LOCATION, "LOC\n1", CPO_A)
    with pytest.raises(ValueError, match="aware"):
        OwnerFact(OwnerKind.RESERVATION, "R1", CPO_A, expires_at=datetime(2024, 1, 1))  # naive on purpose


def test_forget_times() -> None:
    now = 1_700_000_000.0
    assert forget_at(OwnerFact(OwnerKind.TOKEN, "RFID:U1", MSP), now) is None
    assert forget_at(OwnerFact(OwnerKind.SESSION_CPO, "S1", CPO_A), now) == now + SESSION_TTL.total_seconds()
    soon = datetime.fromtimestamp(now + 3600, UTC)
    reservation = OwnerFact(OwnerKind.RESERVATION, "R1", CPO_A, expires_at=soon)
    assert forget_at(reservation, now) == now + 3600 + RESERVATION_GRACE.total_seconds()
    past = OwnerFact(OwnerKind.RESERVATION, "R1", CPO_A, expires_at=datetime.fromtimestamp(now - 7 * DAY, UTC))
    assert forget_at(past, now) == now + RESERVATION_GRACE.total_seconds()
    far = OwnerFact(OwnerKind.RESERVATION, "R1", CPO_A, expires_at=datetime.fromtimestamp(now + 90 * DAY, UTC))
    assert forget_at(far, now) == now + EXPIRING_MAX.total_seconds()
    assert forget_at(OwnerFact(OwnerKind.RESERVATION, "R1", CPO_A), now) == now + EXPIRING_MAX.total_seconds()


def test_parse_owners() -> None:
    assert parse_owners(b"NL:ABC,BE:BEC") == {CPO_A, CPO_B}
    assert parse_owners("NL:ABC") == {CPO_A}


# -- permanent kinds ------------------------------------------------------------------------------------------


async def test_learn_and_look_up_tokens_and_locations(index: OwnerIndex) -> None:
    facts = [
        OwnerFact(OwnerKind.TOKEN, token_key("04a1b2", "RFID"), MSP),
        OwnerFact(OwnerKind.LOCATION, "loc1", CPO_A),
    ]
    assert await index.learn(facts) == 2
    assert await index.learn(facts) == 0  # idempotent
    assert await index.owners(OwnerKind.TOKEN, token_key("04A1B2", "RFID")) == {MSP}
    assert await index.owners(OwnerKind.TOKEN, token_key("04A1B2", "APP_USER")) == frozenset()
    assert await index.owners(OwnerKind.LOCATION, "LOC1") == {CPO_A}
    assert await index.owners(OwnerKind.LOCATION, "LOC2") == frozenset()
    # Kinds do not mix: a location id is not a session id.
    assert await index.owners(OwnerKind.SESSION_CPO, "LOC1") == frozenset()


async def test_two_owners_of_one_id_are_both_reported(index: OwnerIndex) -> None:
    await index.learn([OwnerFact(OwnerKind.LOCATION, "LOC1", CPO_A)])
    await index.learn([OwnerFact(OwnerKind.LOCATION, "LOC1", CPO_B), OwnerFact(OwnerKind.LOCATION, "LOC1", CPO_A)])
    assert await index.owners(OwnerKind.LOCATION, "LOC1") == {CPO_A, CPO_B}


async def test_large_batches_are_learned_completely(index: OwnerIndex) -> None:
    facts = [OwnerFact(OwnerKind.TOKEN, token_key(f"U{n}", "RFID"), MSP) for n in range(LEARN_BATCH * 2 + 7)]
    assert await index.learn(facts) == len(facts)
    assert await index.owners(OwnerKind.TOKEN, token_key(f"U{LEARN_BATCH * 2 + 6}", "RFID")) == {MSP}
    assert (await index.counts())["token"] == len(facts)


# -- expiring kinds -------------------------------------------------------------------------------------------


async def test_sessions_name_their_cpo_and_emsp(index: OwnerIndex) -> None:
    await index.learn(
        [
            OwnerFact(OwnerKind.SESSION_CPO, "s-101", CPO_A),
            OwnerFact(OwnerKind.SESSION_EMSP, "s-101", MSP),
            OwnerFact(OwnerKind.RESERVATION, "r-7", CPO_B),
        ]
    )
    assert await index.owners(OwnerKind.SESSION_CPO, "S-101") == {CPO_A}
    assert await index.owners(OwnerKind.SESSION_EMSP, "S-101") == {MSP}
    assert await index.owners(OwnerKind.RESERVATION, "R-7") == {CPO_B}
    counts = await index.counts()
    assert (counts["session_cpo"], counts["session_emsp"], counts["reservation"]) == (1, 1, 1)


async def test_a_session_bucket_expires_about_thirty_days_on(
    index: OwnerIndex, redis: Redis, keys: RegistryKeys
) -> None:
    now = time.time()
    await index.learn([OwnerFact(OwnerKind.SESSION_CPO, "S1", CPO_A)])
    bucket = keys.owner_bucket(OwnerKind.SESSION_CPO, day_of(now + SESSION_TTL.total_seconds()))
    ttl = await redis.ttl(bucket)
    assert SESSION_TTL.total_seconds() - 60 <= ttl <= SESSION_TTL.total_seconds() + DAY


async def test_a_reservation_lives_until_48_hours_after_its_expiry(
    index: OwnerIndex, redis: Redis, keys: RegistryKeys
) -> None:
    now = time.time()
    expiry = datetime.fromtimestamp(now + 2 * 3600, UTC)
    await index.learn([OwnerFact(OwnerKind.RESERVATION, "R1", CPO_A, expires_at=expiry)])
    forget = now + 2 * 3600 + RESERVATION_GRACE.total_seconds()
    ttl = await redis.ttl(keys.owner_bucket(OwnerKind.RESERVATION, day_of(forget)))
    assert forget - now - 60 <= ttl <= forget - now + DAY
    # Seen by a process a day after the forget time it is gone; two hours before it, still there.
    assert await shifted(redis, keys, forget - now + DAY).owners(OwnerKind.RESERVATION, "R1") == frozenset()
    assert await shifted(redis, keys, forget - now - 7200).owners(OwnerKind.RESERVATION, "R1") == {CPO_A}


async def test_sessions_are_forgotten_after_the_ttl(index: OwnerIndex, redis: Redis, keys: RegistryKeys) -> None:
    await index.learn([OwnerFact(OwnerKind.SESSION_EMSP, "S1", MSP)])
    ttl = SESSION_TTL.total_seconds()
    assert await shifted(redis, keys, ttl - DAY).owners(OwnerKind.SESSION_EMSP, "S1") == {MSP}
    assert await shifted(redis, keys, ttl + DAY).owners(OwnerKind.SESSION_EMSP, "S1") == frozenset()


async def test_facts_learned_long_ago_are_gone_from_redis(redis: Redis, keys: RegistryKeys) -> None:
    # A process whose clock says 40 days ago: the bucket's day is over, so EXPIREAT deletes it at once.
    old = shifted(redis, keys, -40 * DAY)
    await old.learn([OwnerFact(OwnerKind.SESSION_CPO, "S1", CPO_A)])
    bucket = keys.owner_bucket(OwnerKind.SESSION_CPO, day_of(time.time() - 40 * DAY + SESSION_TTL.total_seconds()))
    assert await redis.exists(bucket) == 0
    assert await OwnerIndex(redis, keys).owners(OwnerKind.SESSION_CPO, "S1") == frozenset()


async def test_a_session_seen_again_lives_on(redis: Redis, keys: RegistryKeys) -> None:
    await shifted(redis, keys, -20 * DAY).learn([OwnerFact(OwnerKind.SESSION_CPO, "S1", CPO_A)])
    await OwnerIndex(redis, keys).learn([OwnerFact(OwnerKind.SESSION_CPO, "S1", CPO_A)])
    later = shifted(redis, keys, 25 * DAY)  # 45 days after the first sighting, 25 after the second
    assert await later.owners(OwnerKind.SESSION_CPO, "S1") == {CPO_A}


# -- control plane --------------------------------------------------------------------------------------------


async def test_drop_owners_forgets_only_those_parties(index: OwnerIndex) -> None:
    await index.learn(
        [
            OwnerFact(OwnerKind.LOCATION, "LOC1", CPO_A),
            OwnerFact(OwnerKind.LOCATION, "LOC1", CPO_B),
            OwnerFact(OwnerKind.LOCATION, "LOC2", CPO_A),
            OwnerFact(OwnerKind.TOKEN, token_key("U1", "RFID"), MSP),
            OwnerFact(OwnerKind.SESSION_CPO, "S1", CPO_A),
            OwnerFact(OwnerKind.SESSION_EMSP, "S1", MSP),
            OwnerFact(OwnerKind.RESERVATION, "R1", CPO_A, expires_at=datetime.now(UTC) + timedelta(hours=1)),
        ]
    )
    assert await index.drop_owners([CPO_A]) == 4
    assert await index.owners(OwnerKind.LOCATION, "LOC1") == {CPO_B}
    assert await index.owners(OwnerKind.LOCATION, "LOC2") == frozenset()
    assert await index.owners(OwnerKind.SESSION_CPO, "S1") == frozenset()
    assert await index.owners(OwnerKind.RESERVATION, "R1") == frozenset()
    assert await index.owners(OwnerKind.SESSION_EMSP, "S1") == {MSP}
    assert await index.owners(OwnerKind.TOKEN, token_key("U1", "RFID")) == {MSP}
    assert (await index.counts())["location"] == 1  # LOC2's entry is gone, not left empty
    assert await index.drop_owners([]) == 0
