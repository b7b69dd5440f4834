"""registry/objects.py against a real Redis: pushes applied as a Receiver would, newest wins, GET All pages."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from redis.asyncio import Redis

import registry.objects as objects_module
from registry.keys import RegistryKeys
from registry.objects import ApplyResult, ObjectPage, ObjectPush, ObjectStore, Outcome, PageQuery
from registry.owners import OwnerIndex, OwnerKind, token_key
from routing.datetimes import format_datetime, parse_datetime
from routing.model import ModuleID, PartyKey

pytestmark = pytest.mark.integration

BASE = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
LOC = ModuleID.LOCATIONS
TAR = ModuleID.TARIFFS
TOK = ModuleID.TOKENS


def ts(minutes: float) -> str:
    return format_datetime(BASE + timedelta(minutes=minutes))


def location(loc_id: str, minutes: float, *, owner: tuple[str, str] = ("NL", "ABC"), evses: int = 1) -> dict[str, Any]:
    return {
        "country_code": owner[0],
        "party_id": owner[1],
        "id": loc_id,
        "publish": True,
        "name": f"Location {loc_id}",
        "address": "F.Rooseveltlaan 3A",
        "city": "Gent",
        "country": "BEL",
        "coordinates": {"latitude": "51.047599", "longitude": "3.729944"},
        "evses": [
            {
                "uid": f"E{n}",
                "status": "AVAILABLE",
                "connectors": [
                    {"id": "1", "standard": "IEC_62196_T2", "format": "CABLE", "last_updated": ts(minutes)},
                ],
                "last_updated": ts(minutes),
            }
            for n in range(1, evses + 1)
        ],
        "time_zone": "Europe/Brussels",
        "last_updated": ts(minutes),
    }


def tariff(tariff_id: str, minutes: float, *, owner: tuple[str, str] = ("NL", "ABC")) -> dict[str, Any]:
    return {
        "country_code": owner[0],
        "party_id": owner[1],
        "id": tariff_id,
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "TIME", "price": 2.0, "step_size": 300}]}],
        "last_updated": ts(minutes),
    }


def token(uid: str, minutes: float, token_type: str = "RFID") -> dict[str, Any]:
    return {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": uid,
        "type": token_type,
        "contract_id": f"DE8ACC{uid}",
        "issuer": "TheNewMotion",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": ts(minutes),
    }


def put(module: ModuleID, path: str, body: dict[str, Any] | bytes, token_type: str | None = None) -> ObjectPush:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ObjectPush(module, "PUT", tuple(path.split("/")), token_type, raw)


def patch(module: ModuleID, path: str, body: dict[str, Any], token_type: str | None = None) -> ObjectPush:
    return ObjectPush(module, "PATCH", tuple(path.split("/")), token_type, orjson.dumps(body))


def delete(module: ModuleID, path: str) -> ObjectPush:
    return ObjectPush(module, "DELETE", tuple(path.split("/")), None, b"")


@pytest.fixture
def objects(redis: Redis, keys: RegistryKeys) -> ObjectStore:
    return ObjectStore(redis, keys)


@pytest.fixture
async def other_client(redis_url: str, redis: Redis) -> AsyncIterator[Redis]:
    """A second connection, as a second hub process would have (``redis`` cleans the keys up)."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def stored(objects: ObjectStore, module: ModuleID, path: str, token_type: str | None = None) -> dict[str, Any]:
    raw = await objects.get(module, tuple(path.split("/")), token_type)
    assert raw is not None, f"{path} is not stored"
    value: dict[str, Any] = orjson.loads(raw)
    return value


async def apply_ok(objects: ObjectStore, push: ObjectPush) -> ApplyResult:
    result = await objects.apply(push)
    assert result.outcome is Outcome.STORED, result
    return result


# -- whole objects --------------------------------------------------------------------------------------------


async def test_a_top_level_put_is_stored_byte_for_byte(objects: ObjectStore) -> None:
    # Whitespace, an unknown field and a number orjson would print differently: all kept (§4.1.8.8).
    body = (
        b'{ "country_code": "NL", "party_id": "ABC", "id": "T1",\n  "currency": "EUR", "x_custom": {"a": 1.50},\n'
        b'  "elements": [], "last_updated": "2024-03-01T12:00:00Z" }'
    )
    first = await objects.apply(put(TAR, "NL/ABC/T1", body))
    assert first == ApplyResult(Outcome.STORED, created=True)
    assert await objects.get(TAR, ("NL", "ABC", "T1")) == body
    page = await objects.page(TAR, PageQuery())
    assert page.items == [body]
    again = await objects.apply(put(TAR, "NL/ABC/T1", body))
    assert again == ApplyResult(Outcome.STORED, created=False)


async def test_newest_last_updated_wins_and_equal_applies(objects: ObjectStore) -> None:
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", location("LOC1", 10)))
    older = await objects.apply(put(LOC, "NL/ABC/LOC1", {**location("LOC1", 5), "name": "old"}))
    assert older.outcome is Outcome.STALE
    assert (await stored(objects, LOC, "NL/ABC/LOC1"))["name"] == "Location LOC1"
    same = {**location("LOC1", 10), "name": "same instant"}
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", same))
    assert (await stored(objects, LOC, "NL/ABC/LOC1"))["name"] == "same instant"


async def test_instants_compare_not_strings(objects: ObjectStore) -> None:
    first = {**tariff("T1", 0), "last_updated": "2024-03-01T12:00:00.000Z"}
    await apply_ok(objects, put(TAR, "NL/ABC/T1", first))
    # The same instant written without fraction and zone: equal, so it applies; one microsecond earlier is stale.
    await apply_ok(objects, put(TAR, "NL/ABC/T1", {**tariff("T1", 0), "last_updated": "2024-03-01T12:00:00"}))
    earlier = {**tariff("T1", 0), "last_updated": "2024-03-01T11:59:59.99999"}
    assert (await objects.apply(put(TAR, "NL/ABC/T1", earlier))).outcome is Outcome.STALE


async def test_ids_are_case_insensitive_and_percent_decoded(objects: ObjectStore) -> None:
    await apply_ok(objects, put(LOC, "nl/abc/loc%201", location("LOC 1", 0)))
    assert (await stored(objects, LOC, "NL/ABC/Loc 1"))["id"] == "LOC 1"
    await apply_ok(objects, patch(LOC, "NL/ABC/LOC%201", {"name": "renamed", "last_updated": ts(1)}))
    assert (await objects.counts())["locations"] == 1


# -- nested objects (mod_locations §8.2.2) --------------------------------------------------------------------


async def test_evse_and_connector_puts_land_inside_the_location_and_move_parents_forward(objects: ObjectStore) -> None:
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", location("LOC1", 0)))
    sent = "2024-03-01T12:05:00.5Z"  # the sender's spelling is what the parents get
    evse = {"uid": "E2", "status": "AVAILABLE", "connectors": [], "last_updated": sent}
    assert (await apply_ok(objects, put(LOC, "NL/ABC/LOC1/E2", evse))).created is False
    doc = await stored(objects, LOC, "NL/ABC/LOC1")
    assert [e["uid"] for e in doc["evses"]] == ["E1", "E2"]
    assert doc["last_updated"] == sent
    connector = {"id": "7", "standard": "CHADEMO", "format": "CABLE", "last_updated": ts(10)}
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1/E2/7", connector))
    doc = await stored(objects, LOC, "NL/ABC/LOC1")
    assert doc["evses"][1]["connectors"] == [connector]
    assert doc["evses"][1]["last_updated"] == ts(10)
    assert doc["last_updated"] == ts(10)
    assert doc["evses"][0]["last_updated"] == ts(0)  # siblings untouched
    assert await stored(objects, LOC, "NL/ABC/LOC1/E2/7") == connector
    assert (await stored(objects, LOC, "NL/ABC/LOC1/e2"))["uid"] == "E2"
    # The Location's last_updated (µs score) moved too: a date filter finds it at its new time.
    page = await objects.page(LOC, PageQuery(date_from=BASE + timedelta(minutes=10)))
    assert page.total == 1


async def test_patches_at_every_level(objects: ObjectStore) -> None:
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", location("LOC1", 0, evses=2)))
    await apply_ok(objects, patch(LOC, "NL/ABC/LOC1", {"name": "Interparking", "last_updated": ts(1)}))
    await apply_ok(objects, patch(LOC, "NL/ABC/LOC1/E2", {"status": "CHARGING", "last_updated": ts(2)}))
    await apply_ok(objects, patch(LOC, "NL/ABC/LOC1/E1/1", {"tariff_ids": ["15"], "last_updated": ts(3)}))
    doc = await stored(objects, LOC, "NL/ABC/LOC1")
    assert doc["name"] == "Interparking"
    assert doc["address"] == "F.Rooseveltlaan 3A"  # absent fields stay
    assert doc["evses"][1]["status"] == "CHARGING"
    assert doc["evses"][1]["last_updated"] == ts(2)
    assert doc["evses"][0]["connectors"][0]["tariff_ids"] == ["15"]
    assert doc["evses"][0]["connectors"][0]["standard"] == "IEC_62196_T2"
    assert doc["evses"][0]["last_updated"] == ts(3)
    assert doc["last_updated"] == ts(3)
    # An EVSE "deleted" by status REMOVED stays stored with that status (mod_locations §8.2.2.3).
    await apply_ok(objects, patch(LOC, "NL/ABC/LOC1/E2", {"status": "REMOVED", "last_updated": ts(4)}))
    assert (await stored(objects, LOC, "NL/ABC/LOC1/E2"))["status"] == "REMOVED"


async def test_stale_nested_pushes_change_nothing(objects: ObjectStore) -> None:
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", location("LOC1", 10)))
    before = await objects.get(LOC, ("NL", "ABC", "LOC1"))
    stale = [
        patch(LOC, "NL/ABC/LOC1", {"name": "x", "last_updated": ts(9)}),
        patch(LOC, "NL/ABC/LOC1/E1", {"status": "BLOCKED", "last_updated": ts(9)}),
        patch(LOC, "NL/ABC/LOC1/E1/1", {"format": "SOCKET", "last_updated": ts(9)}),
        put(LOC, "NL/ABC/LOC1/E1", {"uid": "E1", "status": "BLOCKED", "last_updated": ts(9)}),
        put(LOC, "NL/ABC/LOC1/E1/1", {"id": "1", "format": "SOCKET", "last_updated": ts(9)}),
    ]
    for push in stale:
        assert (await objects.apply(push)).outcome is Outcome.STALE, push
    assert await objects.get(LOC, ("NL", "ABC", "LOC1")) == before


async def test_nested_put_under_an_unknown_parent_is_invalid_and_patch_of_unknown_is_unknown(
    objects: ObjectStore,
) -> None:
    orphan = await objects.apply(put(LOC, "NL/ABC/NOPE/E1", {"uid": "E1", "last_updated": ts(0)}))
    assert orphan.outcome is Outcome.INVALID
    assert orphan.reason
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", location("LOC1", 0)))
    orphan = await objects.apply(put(LOC, "NL/ABC/LOC1/E9/1", {"id": "1", "last_updated": ts(1)}))
    assert orphan.outcome is Outcome.INVALID
    for push in (
        patch(LOC, "NL/ABC/NOPE", {"name": "x", "last_updated": ts(1)}),
        patch(LOC, "NL/ABC/LOC1/E9", {"status": "x", "last_updated": ts(1)}),
        patch(LOC, "NL/ABC/LOC1/E1/9", {"format": "x", "last_updated": ts(1)}),
        patch(TOK, "DE/MSP/U1", {"valid": False, "last_updated": ts(1)}),
    ):
        result = await objects.apply(push)
        assert result.outcome is Outcome.UNKNOWN, push
        assert result.reason
    assert await objects.counts() == {"locations": 1, "tariffs": 0, "tokens": 0}


@pytest.mark.parametrize(
    ("push", "reason"),
    [
        (ObjectPush(LOC, "PUT", ("NL", "ABC", "L1"), None, b"{not json"), "not JSON"),
        (ObjectPush(LOC, "PUT", ("NL", "ABC", "L1"), None, b"[]"), "not a JSON object"),
        (put(LOC, "NL/ABC/L1", {k: v for k, v in location("L1", 0).items() if k != "last_updated"}), "last_updated"),
        (put(LOC, "NL/ABC/L1", {**location("L1", 0), "last_updated": "2024-03-01 12:00"}), "DateTime"),
        (patch(LOC, "NL/ABC/L1", {"name": "no last_updated"}), "last_updated"),
        (put(LOC, "NL/ABC/L1", {k: v for k, v in location("L1", 0).items() if k != "id"}), "id is missing"),
        (put(LOC, "NL/ABC/L2", location("L1", 0)), "differs from the URL"),
        (put(LOC, "NL/XYZ/L1", location("L1", 0)), "differs from the URL"),
        (put(TAR, "NL/ABC/T1/X", tariff("T1", 0)), "segments"),
        (patch(TAR, "NL/ABC/T1", {"currency": "USD", "last_updated": ts(1)}), "PATCH"),
        (delete(TOK, "DE/MSP/U1"), "DELETE"),
        (delete(LOC, "NL/ABC/L1"), "DELETE"),
        (put(TOK, "DE/MSP/U1", token("U1", 0), token_type="APP_USER"), "type in the body"),
        (put(ModuleID.SESSIONS, "NL/ABC/S1", {"id": "S1", "last_updated": ts(0)}), "not stored"),
    ],
)
async def test_invalid_pushes_are_refused_with_a_reason(objects: ObjectStore, push: ObjectPush, reason: str) -> None:
    result = await objects.apply(push)
    assert result.outcome is Outcome.INVALID
    assert reason in result.reason
    assert "\n" not in result.reason
    assert await objects.counts() == {"locations": 0, "tariffs": 0, "tokens": 0}


# -- tariffs and tokens ---------------------------------------------------------------------------------------


async def test_tariff_delete_removes_it(objects: ObjectStore) -> None:
    await apply_ok(objects, put(TAR, "NL/ABC/T1", tariff("T1", 0)))
    await apply_ok(objects, put(TAR, "NL/ABC/T2", tariff("T2", 0)))
    assert (await objects.apply(delete(TAR, "NL/ABC/t1"))).outcome is Outcome.DELETED
    assert await objects.get(TAR, ("NL", "ABC", "T1")) is None
    page = await objects.page(TAR, PageQuery())
    assert [orjson.loads(i)["id"] for i in page.items] == ["T2"]
    assert page.total == 1
    again = await objects.apply(delete(TAR, "NL/ABC/T1"))
    assert again.outcome is Outcome.UNKNOWN
    # Put again after a delete: a new object, last in GET All order.
    assert (await apply_ok(objects, put(TAR, "NL/ABC/T1", tariff("T1", 1)))).created
    page = await objects.page(TAR, PageQuery())
    assert [orjson.loads(i)["id"] for i in page.items] == ["T2", "T1"]


async def test_tokens_are_named_by_uid_and_type(objects: ObjectStore) -> None:
    await apply_ok(objects, put(TOK, "DE/MSP/U1", token("U1", 0)))  # no ?type=: RFID (mod_tokens §12.2.1.2)
    await apply_ok(objects, put(TOK, "DE/MSP/U1", token("U1", 0, "APP_USER"), token_type="APP_USER"))
    assert (await objects.counts())["tokens"] == 2
    assert (await stored(objects, TOK, "DE/MSP/U1"))["type"] == "RFID"
    assert (await stored(objects, TOK, "DE/MSP/U1", "RFID"))["type"] == "RFID"
    assert (await stored(objects, TOK, "DE/MSP/u1", "APP_USER"))["type"] == "APP_USER"
    await apply_ok(objects, patch(TOK, "DE/MSP/U1", {"valid": False, "last_updated": ts(1)}, token_type="APP_USER"))
    assert (await stored(objects, TOK, "DE/MSP/U1", "APP_USER"))["valid"] is False
    assert (await stored(objects, TOK, "DE/MSP/U1"))["valid"] is True
    assert await objects.get(TOK, ("DE", "MSP", "U1"), "OTHER") is None


async def test_broadcast_tokens_and_locations_feed_the_owner_index(
    objects: ObjectStore, redis: Redis, keys: RegistryKeys
) -> None:
    index = OwnerIndex(redis, keys)
    await apply_ok(objects, put(TOK, "DE/MSP/abc1", token("ABC1", 0, "APP_USER"), token_type="APP_USER"))
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", location("LOC1", 0)))
    await apply_ok(objects, put(LOC, "BE/BEC/LOC1", location("LOC1", 0, owner=("BE", "BEC"))))
    await apply_ok(objects, put(TAR, "NL/ABC/T1", tariff("T1", 0)))
    assert await index.owners(OwnerKind.TOKEN, token_key("abc1", "APP_USER")) == {PartyKey("DE", "MSP")}
    assert await index.owners(OwnerKind.TOKEN, token_key("abc1", "RFID")) == frozenset()
    # Location ids are unique per CPO only: two owners is the ambiguity the caller answers with 4001.
    assert await index.owners(OwnerKind.LOCATION, "loc1") == {PartyKey("NL", "ABC"), PartyKey("BE", "BEC")}
    assert await index.counts() == {
        "token": 1,
        "location": 1,
        "session_cpo": 0,
        "session_emsp": 0,
        "reservation": 0,
    }


# -- concurrency ------------------------------------------------------------------------------------------------


async def test_out_of_order_puts_from_two_processes_end_in_the_newest(
    objects: ObjectStore, other_client: Redis, keys: RegistryKeys
) -> None:
    other = ObjectStore(other_client, keys)
    rng = random.Random(7)
    for round_ in range(40):
        versions = [put(LOC, "NL/ABC/LOC1", location("LOC1", round_ * 100 + v, evses=2)) for v in range(8)]
        rng.shuffle(versions)
        newest = max(versions, key=lambda p: parse_datetime(orjson.loads(p.body)["last_updated"]))

        async def run(store: ObjectStore, pushes: list[ObjectPush]) -> None:
            for p in pushes:
                assert (await store.apply(p)).outcome in (Outcome.STORED, Outcome.STALE)

        await asyncio.gather(run(objects, versions[::2]), run(other, versions[1::2]))
        assert await objects.get(LOC, ("NL", "ABC", "LOC1")) == newest.body
    assert (await objects.page(LOC, PageQuery())).total == 1


async def test_concurrent_nested_patches_all_land_and_the_newest_wins_per_evse(
    objects: ObjectStore, other_client: Redis, keys: RegistryKeys
) -> None:
    other = ObjectStore(other_client, keys)
    await apply_ok(objects, put(LOC, "NL/ABC/LOC1", location("LOC1", 0, evses=3)))
    rng = random.Random(11)
    pushes = [
        patch(LOC, f"NL/ABC/LOC1/E{e}", {"status": f"S{minute}", "last_updated": ts(minute)})
        for e in (1, 2, 3)
        for minute in rng.sample(range(1, 500), 12)
    ]
    rng.shuffle(pushes)
    outcomes: list[Outcome] = []

    async def run(store: ObjectStore, batch: list[ObjectPush]) -> None:
        for p in batch:
            outcomes.append((await store.apply(p)).outcome)

    await asyncio.gather(run(objects, pushes[::2]), run(other, pushes[1::2]))
    assert set(outcomes) <= {Outcome.STORED, Outcome.STALE}
    doc = await stored(objects, LOC, "NL/ABC/LOC1")
    newest_overall = BASE
    for evse in doc["evses"]:
        mine = [orjson.loads(p.body) for p in pushes if p.segments[3] == evse["uid"]]
        newest = max(mine, key=lambda b: parse_datetime(b["last_updated"]))
        assert evse["status"] == newest["status"]
        assert evse["last_updated"] == newest["last_updated"]
        newest_overall = max(newest_overall, parse_datetime(newest["last_updated"]))
    assert doc["last_updated"] == format_datetime(newest_overall)


async def test_whole_puts_and_patches_racing_keep_the_newest_state(
    objects: ObjectStore, other_client: Redis, keys: RegistryKeys
) -> None:
    other = ObjectStore(other_client, keys)
    await apply_ok(objects, put(TOK, "DE/MSP/U1", token("U1", 0)))
    rng = random.Random(3)
    for round_ in range(20):
        base = round_ * 100 + 10
        pushes = [put(TOK, "DE/MSP/U1", {**token("U1", base + m), "issuer": f"put{m}"}) for m in range(4)]
        pushes += [patch(TOK, "DE/MSP/U1", {"issuer": f"patch{m}", "last_updated": ts(base + m + 4)}) for m in range(4)]
        rng.shuffle(pushes)
        await asyncio.gather(
            asyncio.gather(*(objects.apply(p) for p in pushes[::2])),
            asyncio.gather(*(other.apply(p) for p in pushes[1::2])),
        )
        doc = await stored(objects, TOK, "DE/MSP/U1")
        # The newest change is the last PATCH: it applies over whatever PUT won, and nothing newer exists.
        assert doc["issuer"] == "patch3"
        assert doc["last_updated"] == ts(base + 7)


# -- GET All pages --------------------------------------------------------------------------------------------


async def seed_tariffs(objects: ObjectStore, count: int, minutes: Callable[[int], float]) -> list[str]:
    ids = [f"T{n:03d}" for n in range(count)]
    for n, tariff_id in enumerate(ids):
        await apply_ok(objects, put(TAR, f"NL/ABC/{tariff_id}", tariff(tariff_id, minutes(n))))
    return ids


def ids_of(page: ObjectPage) -> list[str]:
    return [orjson.loads(item)["id"] for item in page.items]


async def test_pages_by_keyset_and_by_offset(objects: ObjectStore) -> None:
    ids = await seed_tariffs(objects, 25, lambda n: (n * 7) % 25)  # last_updated order differs from insertion
    first = await objects.page(TAR, PageQuery(limit=10))
    assert ids_of(first) == ids[:10]
    assert first.total == 25
    assert first.next_offset == 10
    assert first.next_after is not None
    second = await objects.page(TAR, PageQuery(limit=10, offset=10, after=first.next_after))
    assert ids_of(second) == ids[10:20]
    third = await objects.page(TAR, PageQuery(limit=10, offset=20, after=second.next_after))
    assert ids_of(third) == ids[20:]
    assert third.next_after is None
    assert third.next_offset == 25
    by_offset = await objects.page(TAR, PageQuery(limit=10, offset=20))
    assert ids_of(by_offset) == ids[20:]
    assert by_offset.next_after is None
    exact = await objects.page(TAR, PageQuery(limit=25))
    assert exact.next_after is None
    assert (await objects.page(TAR, PageQuery(offset=30))).items == []


async def test_date_filters_are_inclusive_from_and_exclusive_to(objects: ObjectStore) -> None:
    ids = await seed_tariffs(objects, 10, lambda n: 10 - n)  # T000 newest
    query = PageQuery(date_from=BASE + timedelta(minutes=3), date_to=BASE + timedelta(minutes=7))
    page = await objects.page(TAR, query)
    assert ids_of(page) == ["T004", "T005", "T006", "T007"]  # T003 (minute 7) is out, T007 (minute 3) in
    assert page.total == 4
    assert ids_of(await objects.page(TAR, PageQuery(date_from=BASE + timedelta(minutes=9)))) == ids[:2]
    assert (await objects.page(TAR, PageQuery(date_to=BASE + timedelta(minutes=1)))).total == 0


@pytest.fixture(params=["sort", "scan"])
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Date-filtered pages either sort the matches or scan the sequence (here with a tiny budget per call)."""
    if request.param == "scan":
        monkeypatch.setattr(objects_module, "SORT_LIMIT", 0)
        monkeypatch.setattr(objects_module, "SCAN_BUDGET", 3)
    return str(request.param)


async def test_filtered_pages_match_a_reference_model(objects: ObjectStore, strategy: str) -> None:
    rng = random.Random(5)
    minutes = [rng.randrange(0, 60) for _ in range(60)]
    ids = await seed_tariffs(objects, 60, lambda n: minutes[n])
    for _ in range(30):
        low, high = sorted(rng.sample(range(-5, 65), 2))
        date_from = BASE + timedelta(minutes=low) if rng.random() < 0.8 else None
        date_to = BASE + timedelta(minutes=high) if rng.random() < 0.8 else None
        expected = [
            i
            for i, m in zip(ids, minutes, strict=True)
            if (date_from is None or m >= low) and (date_to is None or m < high)
        ]
        limit = rng.choice([1, 4, 7, 50])
        crawled: list[str] = []
        after: int | None = None
        while True:
            page = await objects.page(TAR, PageQuery(date_from=date_from, date_to=date_to, limit=limit, after=after))
            assert page.total == len(expected)
            assert len(page.items) <= limit
            crawled += ids_of(page)
            if page.next_after is None:
                break
            after = page.next_after
        assert crawled == expected
        offset = rng.randrange(0, len(expected) + 2)
        by_offset = await objects.page(TAR, PageQuery(date_from=date_from, date_to=date_to, limit=limit, offset=offset))
        assert ids_of(by_offset) == expected[offset : offset + limit]


async def test_a_crawl_during_updates_neither_skips_nor_repeats_an_unchanged_object(
    objects: ObjectStore, strategy: str
) -> None:
    rng = random.Random(9)
    ids = await seed_tariffs(objects, 80, lambda n: n % 20)
    changed: set[str] = set()
    deleted: set[str] = set()
    fresh = 0
    date_from = BASE if strategy == "scan" else None  # a filter that matches everything, to run the scan path
    seen: list[str] = []
    after: int | None = None
    minute = 100
    while True:
        page = await objects.page(TAR, PageQuery(date_from=date_from, limit=9, after=after))
        seen += ids_of(page)
        # Between pages, other owners' pushes go on: updates, inserts and deletes, anywhere in the order.
        for _ in range(4):
            minute += 1
            action = rng.choice(["update", "insert", "delete"])
            victim = rng.choice(ids)
            if action == "update":
                await apply_ok(objects, put(TAR, f"NL/ABC/{victim}", tariff(victim, minute)))
                changed.add(victim)
            elif action == "delete" and victim not in deleted:
                assert (await objects.apply(delete(TAR, f"NL/ABC/{victim}"))).outcome is Outcome.DELETED
                deleted.add(victim)
            else:
                fresh += 1
                await apply_ok(objects, put(TAR, f"NL/ABC/N{fresh:03d}", tariff(f"N{fresh:03d}", minute)))
        if page.next_after is None:
            break
        after = page.next_after
    assert len(seen) == len(set(seen)), "an object was served twice"
    unchanged = [i for i in ids if i not in changed and i not in deleted]
    assert [i for i in seen if i in unchanged] == unchanged  # all of them, in their order
    # Updated objects keep their place: served once at most, wherever the crawl was when they changed.
    assert set(seen) <= set(ids) | {f"N{n:03d}" for n in range(1, fresh + 1)}


async def test_page_of_100_from_a_large_store_reads_only_that_page(objects: ObjectStore, redis: Redis) -> None:
    # 2,000 objects written directly through the Lua put; the page must not depend on scanning them all in Python.
    for n in range(2000):
        await objects.apply(put(TAR, f"NL/ABC/B{n:04d}", tariff(f"B{n:04d}", n % 50)))
    page = await objects.page(TAR, PageQuery(limit=100, offset=0))
    assert len(page.items) == 100
    assert page.total == 2000
    middle = await objects.page(TAR, PageQuery(limit=100, after=page.next_after))
    assert ids_of(middle)[0] == "B0100"
    filtered = await objects.page(TAR, PageQuery(limit=100, date_from=BASE + timedelta(minutes=49)))
    assert filtered.total == 40
    assert ids_of(filtered) == [f"B{n:04d}" for n in range(49, 2000, 50)]


# -- round trips ----------------------------------------------------------------------------------------------


class CommandCounter:
    """Counts the RESP commands a client sends through a loopback proxy (each a request the client waits on)."""

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def feed(self, buffer: bytearray) -> None:
        """Take every complete command (``*n`` then n bulk strings) off the front of ``buffer``."""
        while True:
            end = _complete_command(buffer)
            if end is None:
                return
            name_len_end = buffer.index(b"\r\n", buffer.index(b"$")) + 2
            length = int(buffer[buffer.index(b"$") + 1 : name_len_end - 2])
            self.commands.append(bytes(buffer[name_len_end : name_len_end + length]).upper())
            del buffer[:end]


def _complete_command(buffer: bytearray) -> int | None:
    if not buffer.startswith(b"*") or b"\r\n" not in buffer:
        return None
    head = buffer.index(b"\r\n")
    position = head + 2
    for _ in range(int(buffer[1:head])):
        line = buffer.find(b"\r\n", position)
        if line < 0:
            return None
        position = line + 2 + int(buffer[position + 1 : line]) + 2
        if position > len(buffer):
            return None
    return position


@asynccontextmanager
async def counting_proxy(redis_url: str) -> AsyncIterator[tuple[str, CommandCounter]]:
    target = urlsplit(redis_url)
    counter = CommandCounter()
    pumps: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        buffer = bytearray()
        while data := await reader.read(65536):
            if count:
                buffer += data
                counter.feed(buffer)
            writer.write(data)
            await writer.drain()
        writer.close()

    async def connected(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(target.hostname, target.port)
        writers.extend((client_writer, server_writer))
        pumps.add(asyncio.create_task(pump(client_reader, server_writer, True)))
        pumps.add(asyncio.create_task(pump(server_reader, client_writer, False)))

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/{target.path.lstrip('/') or 0}", counter
    finally:
        server.close()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        await server.wait_closed()


async def test_round_trips_per_operation(redis_url: str, redis: Redis, keys: RegistryKeys) -> None:
    async with counting_proxy(redis_url) as (url, counter):
        client = Redis.from_url(url)
        try:
            objects = ObjectStore(client, keys)
            index = OwnerIndex(client, keys)
            # Warm up: the connection's handshake, and each script loaded once (EVALSHA, NOSCRIPT, SCRIPT LOAD).
            await apply_ok(objects, put(LOC, "NL/ABC/L0", location("L0", 0)))
            await apply_ok(objects, patch(LOC, "NL/ABC/L0/E1", {"status": "CHARGING", "last_updated": ts(1)}))
            await objects.page(LOC, PageQuery())
            await index.owners(OwnerKind.SESSION_CPO, "S1")

            async def sent(operation: Callable[[], Any]) -> list[bytes]:
                counter.commands.clear()
                await operation()
                return list(counter.commands)

            assert await sent(lambda: objects.apply(put(LOC, "NL/ABC/L1", location("L1", 0)))) == [b"EVALSHA"]
            assert await sent(lambda: objects.apply(put(TOK, "DE/MSP/U1", token("U1", 0)))) == [b"EVALSHA"]
            nested = patch(LOC, "NL/ABC/L1/E1/1", {"format": "SOCKET", "last_updated": ts(2)})
            assert await sent(lambda: objects.apply(nested)) == [b"HGET", b"EVALSHA"]
            assert await sent(lambda: objects.page(LOC, PageQuery(limit=1))) == [b"EVALSHA"]
            dated = PageQuery(date_from=BASE, limit=1, after=1)
            assert await sent(lambda: objects.page(LOC, dated)) == [b"EVALSHA"]
            assert await sent(lambda: objects.get(LOC, ("NL", "ABC", "L1", "E1"))) == [b"HGET"]
            assert await sent(lambda: index.owners(OwnerKind.LOCATION, "L1")) == [b"HGET"]
            assert await sent(lambda: index.owners(OwnerKind.SESSION_CPO, "S1")) == [b"EVALSHA"]
            assert await sent(objects.counts) == [b"ZCARD"] * 3  # one pipeline
        finally:
            await client.aclose()


# -- control plane --------------------------------------------------------------------------------------------


async def test_drop_owners_removes_every_object_of_those_owners(objects: ObjectStore) -> None:
    await apply_ok(objects, put(LOC, "NL/ABC/L1", location("L1", 0)))
    await apply_ok(objects, put(LOC, "BE/BEC/L1", location("L1", 0, owner=("BE", "BEC"))))
    await apply_ok(objects, put(TAR, "NL/ABC/T1", tariff("T1", 0)))
    await apply_ok(objects, put(TAR, "BE/BEC/T1", tariff("T1", 0, owner=("BE", "BEC"))))
    await apply_ok(objects, put(TOK, "DE/MSP/U1", token("U1", 0)))
    assert await objects.counts() == {"locations": 2, "tariffs": 2, "tokens": 1}
    removed = await objects.drop_owners([PartyKey("NL", "ABC"), PartyKey("DE", "MSP")])
    assert removed == 3
    assert await objects.counts() == {"locations": 1, "tariffs": 1, "tokens": 0}
    page = await objects.page(LOC, PageQuery())
    assert [orjson.loads(i)["party_id"] for i in page.items] == ["BEC"]
    assert await objects.get(TAR, ("NL", "ABC", "T1")) is None
    assert await objects.drop_owners([]) == 0
