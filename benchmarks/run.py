"""The benchmark command: micro, end to end, broadcast, the store of broadcast data and scale, in one go, written
to benchmarks/RESULTS.md.

Run: ``python -m benchmarks.run`` (about 9 minutes on 2 cores; ``--smoke`` takes about half a minute and is what
the test suite runs so this never rots). Everything talks to 127.0.0.1 only and every process is stopped by its
PID.

End to end, in the same run and so as ratios: a fast stub party alone (direct), the naive reference proxy
(benchmarks/naive_proxy.py) and the hub with 1 and 2 workers, each under the same load generator — wrk when
installed (Debian package ``wrk``), else the Python generator whose own ceiling is measured first. Each round
runs every scenario once, in a fixed order, and the rounds repeat (median of ``--repeats``), so machine drift
hits all scenarios alike:

- single-object GET (1.5 KB Location) and 1.5 KB PUT: direct, naive proxy, hub;
- paginated list GET (benchmarks/pagination.py): naive proxy (Link passed through) and hub (Link rewritten into
  a signed relay URL);
- message tracking's cost, on two more hubs that serve nothing but this GET in the same rounds (the first hub also
  stores broadcasts and serves GET All): one as shipped and one whose ``trace_max_records`` is the opposite of
  the default (0 turns message tracking off; its Redis memory per record is benchmarks/tracking.py's);
- the hostile-traffic checks' cost (head limits, rate limit and pool caps, path and URL guards, answer head
  limits), on one hub process measured with its checks switched off and on again in turn (benchmarks/ablation.py:
  two processes alike differ by several per cent, one process does not), on a CPU of its own (the load generator,
  the stub and the other processes on the other one);
- GET All via Hub, a page of 100 from the hub's store of 10,000 Locations (benchmarks/holdings.py, which also
  measures how fast broadcast pushes are stored, before the rounds).

Then, interleaved the same way at 1 connection with quarter-length runs (latency; thousands of requests each):
direct GET, hub GET, the GET All page, and the CPO's authorize of a broadcast token with OCPI-to and
open-routed (without it).

Redis: each hub has a private redis-server; ``topology.RedisMeter`` reads INFO commandstats around every hub
run, subtracts the rate measured while idle, and reports commands per 1k requests, per command. Redis counts
the ``redis.call``s inside a Lua script as commands too (an EVALSHA is one round trip, plus what it runs).
Message tracking's stream writes (XADD, XTRIM) are batched off the request path and counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from benchmarks import ablation, holdings, pagination, topology
from benchmarks.load import Load, Request, have_wrk, run_load
from benchmarks.topology import CPO, EMSP, RedisMeter, routed_headers
from config.settings import FIELDS

PUT_BODY = (
    b'{"country_code":"NL","party_id":"CPO","id":"LOC1","publish":true,"name":"Benchmark Plaza",'
    + b'"address":"Stationsplein 1","city":"Amsterdam","postal_code":"1012AB","country":"NLD",'
    + b'"coordinates":{"latitude":"52.379189","longitude":"4.899431"},"evses":['
    + b",".join(
        b'{"uid":"NL*CPO*E%d","evse_id":"NL*CPO*E%d","status":"AVAILABLE","connectors":[{"id":"1",'
        b'"standard":"IEC_62196_T2","format":"SOCKET","power_type":"AC_3_PHASE","max_voltage":230,'
        b'"max_amperage":32,"last_updated":"2026-01-01T00:00:00Z"}],"last_updated":"2026-01-01T00:00:00Z"}' % (i, i)
        for i in range(4)
    )
    + b'],"time_zone":"Europe/Amsterdam","last_updated":"2026-01-01T00:00:00Z"}'
)
#: The setting that bounds (and with 0 turns off) message tracking (hub/tracking.py, registry/trace.py).
TRACKING_SETTING: Final = "trace_max_records"
#: The bound a "tracking on" hub gets when tracking is off by default (registry/trace.py's documented default).
TRACKING_ON_RECORDS: Final = 1_000_000
#: Redis commands message tracking sends (batched stream writes), counted apart from the request path's.
TRACKING_COMMANDS: Final = frozenset({"xadd", "xtrim"})
NOT_MEASURED: Final = "not measured: setting missing"

# Scenario names (rows of the table; tests/integration/test_benchmarks_smoke.py reads some of them).
DIRECT_GET: Final = "direct GET"
NAIVE_GET: Final = "naive proxy GET (1 worker)"
HUB_GET: Final = "hub GET (1 worker)"
HUB_GET_REF: Final = "hub GET, tracking's reference (1 worker)"
HUB_GET_BARE: Final = "hub GET, hostile-traffic checks switched off (1 worker)"
HUB_GET_CHECKED: Final = "hub GET, the same process with its checks on again (1 worker)"
NAIVE_PAGE: Final = "naive proxy paginated GET (1 worker)"
HUB_PAGE: Final = "hub paginated GET (1 worker)"
DIRECT_PUT: Final = "direct PUT 1.5 KB"
NAIVE_PUT: Final = "naive proxy PUT 1.5 KB"
HUB_PUT: Final = "hub PUT 1.5 KB (1 worker)"
HUB_GET_ALL: Final = "hub GET All page of 100 (1 worker)"
HUB_GET_ALL_1: Final = "hub GET All page of 100, 1 connection (1 worker)"
DIRECT_GET_1: Final = "direct GET, 1 connection"
HUB_GET_1: Final = "hub GET, 1 connection (1 worker)"
AUTHORIZE_TO: Final = "hub authorize with OCPI-to, 1 connection (1 worker)"
AUTHORIZE_OPEN: Final = "hub authorize open-routed, 1 connection (1 worker)"
HUB2_GET: Final = "hub GET (2 workers)"
GET_PATH: Final = "/ocpi/2.2.1/sender/locations/LOC1"


@dataclass
class Config:
    smoke: bool
    seconds: float
    warmup: float
    repeats: int
    connections: int
    prefer_wrk: bool
    output: Path


@dataclass
class Scenario:
    name: str
    runs: list[Load] = field(default_factory=list)
    #: Per run on a metered hub: Redis commands per 1k requests beyond the idle rate, by command.
    redis: list[dict[str, float]] = field(default_factory=list)
    #: Per run on a metered hub: every command the hub's Redis processed, per second.
    redis_per_s: list[float] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(float(getattr(r, attr)) for r in self.runs))

    @property
    def rps(self) -> float:
        return self.median("rps")

    def redis_per_1k(self, only: frozenset[str] | None = None, leave_out: frozenset[str] = frozenset()) -> float:
        """Median over runs of the commands per 1k requests (``only`` these, or all but ``leave_out``)."""
        if not self.redis:
            return float("nan")
        return float(
            statistics.median(
                max(sum(v for k, v in run.items() if (only is None or k in only) and k not in leave_out), 0.0)
                for run in self.redis
            )
        )

    def redis_by_command(self) -> dict[str, float]:
        """Median per command, commands under 0.5 per 1k left out (the idle rate's noise)."""
        names = {k for run in self.redis for k in run}
        medians = {k: statistics.median(run.get(k, 0.0) for run in self.redis) for k in sorted(names)}
        return {k: round(v, 2) for k, v in medians.items() if abs(v) >= 0.5}


@dataclass(frozen=True, slots=True)
class Tracking:
    """How message tracking is compared: the default hub against one with the opposite setting."""

    default_records: int

    @property
    def default_on(self) -> bool:
        return self.default_records > 0

    @property
    def other_state(self) -> str:
        return "off" if self.default_on else "on"

    @property
    def other_settings(self) -> dict[str, str]:
        return {TRACKING_SETTING: "0" if self.default_on else str(TRACKING_ON_RECORDS)}

    @property
    def scenario(self) -> str:
        return f"hub GET, tracking {self.other_state} (1 worker)"


def tracking_plan() -> Tracking | None:
    """None while the hub has no ``trace_max_records`` setting (unknown OCPI_HUB_ variables are ignored)."""
    setting = FIELDS.get(TRACKING_SETTING)
    if setting is None:
        return None
    default = setting.default
    if not isinstance(default, int):
        raise RuntimeError(f"{TRACKING_SETTING} has no integer default: {default!r}")
    return Tracking(default)


async def measure(
    config: Config,
    scenario: Scenario,
    request: Request,
    pids: list[int],
    *,
    connections: int | None = None,
    seconds: float | None = None,
    meter: RedisMeter | None = None,
) -> None:
    """One warm-up, then one measured run; with ``meter``, the Redis commands of the measured run."""
    conns = connections or config.connections
    if config.warmup:
        run_load(request, conns, config.warmup, pids, config.prefer_wrk)
    before = await meter.calls() if meter is not None else {}
    started = time.monotonic()
    run = run_load(request, conns, seconds or config.seconds, pids, config.prefer_wrk)
    elapsed = time.monotonic() - started
    scenario.runs.append(run)
    if meter is not None:
        extra = meter.beyond_idle(before, await meter.calls(), elapsed)
        scenario.redis.append({k: v / max(run.requests, 1) * 1000 for k, v in extra.items()})
        scenario.redis_per_s.append((sum(extra.values()) + sum(meter.idle_per_s.values()) * elapsed) / elapsed)


async def idle(meters: list[RedisMeter], seconds: float) -> None:
    """The background rate of each hub's Redis while no request arrives (snapshot polls, lease, liveness)."""
    before = [await m.calls() for m in meters]
    await asyncio.sleep(seconds)
    for meter, first in zip(meters, before, strict=True):
        meter.set_idle(first, await meter.calls(), seconds)


async def end_to_end(config: Config) -> dict[str, Any]:
    """Every end-to-end scenario, interleaved in rounds (see the module docstring); medians."""
    results: dict[str, Scenario] = {}

    def scenario(name: str) -> Scenario:
        return results.setdefault(name, Scenario(name))

    info: dict[str, Any] = {}
    tracking = tracking_plan()
    with topology.stub() as stub_port:
        stub = f"http://127.0.0.1:{stub_port}"
        direct_get = Request("GET", f"{stub}/ocpi/2.2.1/locations/sender/LOC1", {})
        direct_put = Request(
            "PUT", f"{stub}/ocpi/2.2.1/locations/receiver/NL/CPO/LOC1", {"Content-Type": "application/json"}, PUT_BODY
        )
        if not (config.prefer_wrk and have_wrk()):
            ceiling = run_load(direct_get, config.connections, config.seconds, [], prefer_wrk=False)
            info["generator_ceiling_rps"] = round(ceiling.rps)
        with topology.naive_proxy(stub_port) as (naive_port, naive_pid):
            naive = f"http://127.0.0.1:{naive_port}"
            naive_get = Request("GET", f"{naive}/ocpi/2.2.1/locations/sender/LOC1", {})
            naive_put = Request(
                "PUT",
                f"{naive}/ocpi/2.2.1/locations/receiver/NL/CPO/LOC1",
                {"Content-Type": "application/json"},
                PUT_BODY,
            )
            naive_page = pagination.stub_request(naive)
            async with contextlib.AsyncExitStack() as stack:
                hub1 = await stack.enter_async_context(topology.hub(stub_port, workers=1))
                other = None
                if tracking is not None:
                    other = await stack.enter_async_context(
                        topology.hub(stub_port, workers=1, settings=tracking.other_settings)
                    )
                reference = await stack.enter_async_context(topology.hub(stub_port, workers=1))
                bare = await stack.enter_async_context(
                    topology.hub(stub_port, workers=1, extra_env=stack.enter_context(ablation.environment()))
                )
                hub_get = Request("GET", hub1.hub_url + GET_PATH, routed_headers(hub1.emsp_token, CPO, EMSP))
                ref_get = Request("GET", reference.hub_url + GET_PATH, routed_headers(reference.emsp_token, CPO, EMSP))
                bare_get = Request("GET", bare.hub_url + GET_PATH, routed_headers(bare.emsp_token, CPO, EMSP))
                for active in (False, True):  # raises unless the switch works both ways
                    await ablation.switch(bare_get, bare.hub_pids, active=active)
                hub_put = Request(
                    "PUT",
                    hub1.hub_url + "/ocpi/2.2.1/receiver/locations/NL/CPO/LOC1",
                    routed_headers(hub1.cpo_token, EMSP, CPO),
                    PUT_BODY,
                )
                hub_page = pagination.hub_request(hub1)
                info["paginated"] = await pagination.check(naive_page, hub_page, hub1)
                prepared = await holdings.prepare(
                    hub1, smoke=config.smoke, repeats=config.repeats, connections=config.connections
                )
                meter1 = RedisMeter(hub1.redis_url)
                stack.push_async_callback(meter1.close)
                meters = [meter1]
                # The tracking pair's other half: the same GET on the hub with the opposite setting.
                paired: tuple[str, Request, list[int], RedisMeter] | None = None
                if tracking is not None and other is not None:
                    other_get = Request("GET", other.hub_url + GET_PATH, routed_headers(other.emsp_token, CPO, EMSP))
                    other_meter = RedisMeter(other.redis_url)
                    stack.push_async_callback(other_meter.close)
                    meters.append(other_meter)
                    paired = (tracking.scenario, other_get, other.hub_pids, other_meter)
                await idle(meters, config.seconds)
                info["redis_idle_commands_per_s"] = round(sum(meter1.idle_per_s.values()), 2)
                for _ in range(config.repeats):
                    await measure(config, scenario(DIRECT_GET), direct_get, [])
                    await measure(config, scenario(NAIVE_GET), naive_get, [naive_pid])
                    await measure(config, scenario(HUB_GET), hub_get, hub1.hub_pids, meter=meter1)
                    await measure(config, scenario(HUB_GET_REF), ref_get, reference.hub_pids)
                    if paired is not None:
                        await measure(config, scenario(paired[0]), paired[1], paired[2], meter=paired[3])
                    # On and off in turn, the order swapped every round; the hub on a core of its own.
                    with topology.dedicated_core(bare.hub_pids) as info["checks_on_dedicated_core"]:
                        for active in (True, False) if len(scenario(HUB_GET_BARE).runs) % 2 else (False, True):
                            await ablation.switch(bare_get, bare.hub_pids, active=active)
                            checks_scenario = HUB_GET_CHECKED if active else HUB_GET_BARE
                            await measure(config, scenario(checks_scenario), bare_get, bare.hub_pids)
                    await measure(config, scenario(NAIVE_PAGE), naive_page, [naive_pid])
                    await measure(config, scenario(HUB_PAGE), hub_page, hub1.hub_pids, meter=meter1)
                    await measure(config, scenario(DIRECT_PUT), direct_put, [])
                    await measure(config, scenario(NAIVE_PUT), naive_put, [naive_pid])
                    await measure(config, scenario(HUB_PUT), hub_put, hub1.hub_pids, meter=meter1)
                    await measure(config, scenario(HUB_GET_ALL), prepared.get_all, hub1.hub_pids, meter=meter1)
                # Latency at one connection: what the hub adds to a request, and what open routing adds to it.
                short = max(config.seconds / 4, 0.25)
                latency: list[tuple[str, Request, RedisMeter | None]] = [
                    (DIRECT_GET_1, direct_get, None),
                    (HUB_GET_1, hub_get, meter1),
                    (HUB_GET_ALL_1, prepared.get_all, meter1),
                    (AUTHORIZE_TO, prepared.authorize_to, meter1),
                    (AUTHORIZE_OPEN, prepared.authorize_open, meter1),
                ]
                for _ in range(config.repeats):
                    for name, request, meter in latency:
                        pids = [] if meter is None else hub1.hub_pids
                        await measure(config, scenario(name), request, pids, connections=1, seconds=short, meter=meter)
                info["one_connection_seconds"] = short
            async with topology.hub(stub_port, workers=2) as hub2:
                hub2_get = Request("GET", hub2.hub_url + GET_PATH, routed_headers(hub2.emsp_token, CPO, EMSP))
                for _ in range(config.repeats):
                    await measure(config, scenario(HUB2_GET), hub2_get, hub2.hub_pids)
    return {"scenarios": results, "info": info, "holdings": prepared.figures, "tracking": tracking}


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


Target = tuple[str, float | str, str, bool | None]


def checks_per_round(s: dict[str, Scenario]) -> list[float]:
    """The checks' cost in each round, % (with ÷ without - 1, CPU per request): the two runs of a round are
    neighbours in time, so a machine that drifts between rounds moves both (the row reports their median)."""
    pairs = zip(s[HUB_GET_CHECKED].runs, s[HUB_GET_BARE].runs, strict=True)
    return [(checked.cpu_per_10k / bare.cpu_per_10k - 1) * 100 for checked, bare in pairs]


def targets(
    e2e: dict[str, Any],
    micro: dict[str, Any],
    store_memory: dict[str, Any],
    broadcast: dict[str, Any],
    scale: dict[str, Any],
    trace_memory: dict[str, Any],
) -> list[Target]:
    """(figure, value, target, met); met None for information only."""
    s: dict[str, Scenario] = e2e["scenarios"]
    held: dict[str, Any] = e2e["holdings"]
    hub1, naive, hub2 = s[HUB_GET].rps, s[NAIVE_GET].rps, s[HUB2_GET].rps
    added = s[HUB_GET_1].median("p50_ms") - s[DIRECT_GET_1].median("p50_ms")
    page_ratio = s[HUB_PAGE].rps / s[NAIVE_PAGE].rps
    cpu_ratio = s[HUB_PAGE].median("cpu_per_10k") / s[HUB_GET].median("cpu_per_10k")
    redis_get = s[HUB_GET].redis_per_1k(leave_out=TRACKING_COMMANDS)
    checks = statistics.median(checks_per_round(s))
    checks_rps = (1 - s[HUB_GET_CHECKED].rps / s[HUB_GET_BARE].rps) * 100
    redis_page = s[HUB_PAGE].redis_per_1k(leave_out=TRACKING_COMMANDS)
    open_added = s[AUTHORIZE_OPEN].median("p50_ms") - s[AUTHORIZE_TO].median("p50_ms")
    stored = held["store"]["locations"]
    get_all_p50 = s[HUB_GET_ALL_1].median("p50_ms")
    deliveries = float(broadcast.get("deliveries_per_s", 0))
    rows: list[Target] = [
        ("hub (1 worker) ÷ naive proxy, routed GET", hub1 / naive, "≥ 2", hub1 / naive >= 2),
        ("hub (1 worker) ÷ naive proxy, paginated GET", page_ratio, "≥ 2", page_ratio >= 2),
        ("hub CPU per paginated GET ÷ per single-object GET", cpu_ratio, "≤ 1.15", cpu_ratio <= 1.15),
        (
            "of which the Link rewrite alone, µs per answer (micro: Relays.link, a crawl's next page)",
            float(micro["pagination_link"]["relay_link_us"]),
            "(info)",
            None,
        ),
        (
            "the Link rewrite of a list's first page, µs (micro: Relays.link, signed afresh)",
            float(micro["pagination_link"]["relay_link_first_of_list_us"]),
            "(info)",
            None,
        ),
        ("hub (1 worker) ÷ naive proxy, 1.5 KB PUT", s[HUB_PUT].rps / s[NAIVE_PUT].rps, "(info)", None),
        ("hub 2 workers ÷ 1 worker, routed GET", hub2 / hub1, "≥ 1.7", hub2 / hub1 >= 1.7),
        ("hub ÷ direct, routed GET", hub1 / s[DIRECT_GET].rps, "(info)", None),
        ("hub-added p50 latency at 1 connection (ms)", added, "≤ 1", added <= 1.0),
        ("Redis commands per 1k routed GETs, beyond the idle rate (¹)", redis_get, "≈ 0", redis_get < 1),
        ("Redis commands per 1k paginated GETs, beyond the idle rate (¹)", redis_page, "≈ 0", redis_page < 1),
        (
            "Redis commands per 1k routed GETs written by message tracking (XADD/XTRIM, batched)",
            s[HUB_GET].redis_per_1k(only=TRACKING_COMMANDS),
            "(info)",
            None,
        ),
        *_tracking_rows(s, e2e["tracking"]),
        (
            "hostile-traffic checks' cost: hub CPU per routed GET, with ÷ without - 1 (%, median of the rounds' pairs)",
            checks,
            "≤ 5 %",
            checks <= 5,
        ),
        (
            "hostile-traffic checks' cost: routed GET throughput lost, 1 - with ÷ without (%)",
            checks_rps,
            "(info)",
            None,
        ),
        ("broadcast Locations stored/s (~2.5 KB, 1 recipient)", held["apply"]["stored_per_s_median"], "(info)", None),
        (f"GET All via Hub, page of 100 of {stored:,} Locations: req/s", s[HUB_GET_ALL].rps, "(info)", None),
        (f"GET All via Hub, page of 100 of {stored:,} Locations: p50 ms, 1 connection", get_all_p50, "(info)", None),
        ("open routing's added p50, authorize at 1 connection (ms)", open_added, "(info)", None),
        *_memory_rows(store_memory),
        (
            f"Redis memory per 100,000 message-tracking records (MB; measured {trace_memory['records']:,})",
            float(trace_memory["mb_per_100000"]),
            "(info)",
            None,
        ),
        ("snapshot memory, 10k parties (MB)", _scale_mem(scale, 10_000), "≤ 50", _scale_mem(scale, 10_000) <= 50),
        (
            "change visible in every worker (s, largest registry measured)",
            _propagation(scale),
            "≤ 1",
            _propagation(scale) <= 1,
        ),
        ("broadcast deliveries/s (fan-out to 100)", deliveries, "≥ 5000", deliveries >= 5000),
    ]
    return rows


def _tracking_rows(s: dict[str, Scenario], tracking: Tracking | None) -> list[Target]:
    label = "message tracking's cost: routed GET throughput lost, 1 - on ÷ off (%)"
    if tracking is None:
        return [(label, NOT_MEASURED, "≤ 5 %", None)]
    ref = s[HUB_GET_REF]
    on, off = (ref, s[tracking.scenario]) if tracking.default_on else (s[tracking.scenario], ref)
    cost = (1 - on.rps / off.rps) * 100
    cpu = (on.median("cpu_per_10k") / off.median("cpu_per_10k") - 1) * 100
    return [
        (label, cost, "≤ 5 %", cost <= 5),
        ("message tracking's cost: hub CPU per routed GET, on ÷ off - 1 (%)", cpu, "(info)", None),
    ]


def _memory_rows(store_memory: dict[str, Any]) -> list[Target]:
    locations, tokens = store_memory["locations"], store_memory["tokens"]
    return [
        (
            f"Redis memory per 10,000 Locations (MB; measured {locations['measured_objects']:,})",
            float(locations["mb_per_10000"]),
            "(info)",
            None,
        ),
        (
            f"Redis memory per 1,000,000 Tokens (MB; extrapolated from {tokens['measured_objects']:,})",
            float(tokens["mb_per_1000000"]),
            "(info)",
            None,
        ),
    ]


def render(
    config: Config,
    e2e: dict[str, Any],
    micro: dict[str, Any],
    broadcast: dict[str, Any],
    store_memory: dict[str, Any],
    scale: dict[str, Any],
    trace_memory: dict[str, Any],
    command: str,
) -> str:
    s: dict[str, Scenario] = e2e["scenarios"]
    info = e2e["info"]
    tracking: Tracking | None = e2e["tracking"]
    m = machine()
    tool = s[DIRECT_GET].runs[0].tool
    load_per_s = statistics.median(s[HUB_GET].redis_per_s)
    lines = [
        "# ocpi-hub benchmark results",
        "",
        "Written by `python -m benchmarks.run`; do not edit by hand.",
        "",
        f"- command: `{command}`",
        f"- machine: {m['cpus']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}",
        f"- date: {m['date']}",
        f"- load generator: {tool}, {config.connections} connections, {config.seconds:g} s per run after "
        f"{config.warmup:g} s warm-up ({info['one_connection_seconds']:g} s at 1 connection), median of "
        f"{config.repeats} interleaved runs",
        f"- Redis commands the hub sends: {info['redis_idle_commands_per_s']}/s idle (snapshot polls, lease, liveness),"
        f" {load_per_s:.2f}/s under routed load",
    ]
    if tracking is None:
        lines.append(f"- message tracking: {NOT_MEASURED} (config.settings.FIELDS has no `{TRACKING_SETTING}`)")
    else:
        lines.append(
            f"- message tracking: {'on' if tracking.default_on else 'off'} by default ({TRACKING_SETTING} ="
            f" {tracking.default_records}) in every hub run but “{tracking.scenario}”"
        )
    lines.append(
        "- hostile-traffic checks' cost: one hub process, its checks switched off and on in turn"
        + (", on a CPU of its own" if info.get("checks_on_dedicated_core") else ", sharing the CPUs (one CPU only)")
    )
    if "generator_ceiling_rps" in info:
        lines.append(
            f"- Python load generator ceiling (against the stub directly): {info['generator_ceiling_rps']} req/s"
        )
    lines += [
        "",
        "## End to end (loopback, 1.5 KB OCPI Location; paginated: pages of 10 small Locations)",
        "",
        "| scenario | req/s | p50 ms | p99 ms | server CPU s / 10k req | peak RSS MB | machine CPU busy |"
        " Redis cmds / 1k req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, sc in s.items():
        errors = sum(r.errors for r in sc.runs)
        cpu = "-" if name.startswith("direct") else f"{sc.median('cpu_per_10k'):.2f}"
        rss = "-" if name.startswith("direct") else f"{max(r.peak_rss_mb for r in sc.runs):.0f}"
        p50, p99 = sc.median("p50_ms"), sc.median("p99_ms")
        busy = f"{sc.median('machine_busy') * 100:.0f} %"
        redis = f"{sc.redis_per_1k():,.1f}" if sc.redis else "-"
        lines.append(
            f"| {name} | {sc.rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu} | {rss} | {busy} | {redis} | {errors} |"
        )
    lines += ["", "## Targets", "", "| figure | value | target | met |", "|---|---:|---|---|"]
    for label, value, target, met in targets(e2e, micro, store_memory, broadcast, scale, trace_memory):
        shown = value if isinstance(value, str) else f"{value:,.2f}"
        lines.append(f"| {label} | {shown} | {target} | {'-' if met is None else 'yes' if met else 'NO'} |")
    lines += [
        "",
        "(¹) Message tracking's stream writes (XADD/XTRIM) are batched off the request path (hub/tracking.py) and"
        " counted apart; every other command the hub's Redis processed during the run counts. Redis commands are"
        " what Redis executed: the `redis.call`s inside a Lua script count as well as the EVALSHA (one round"
        " trip) that ran them; the breakdown below tells them apart.",
        "",
        "The hostile-traffic checks' cost in each round, with ÷ without - 1 (%): "
        + ", ".join(f"{c:+.1f}" for c in checks_per_round(s))
        + ".",
        "",
        "No body is parsed on a routed GET or PUT (hub/proxy.py reads bodies only to forward them; it"
        " parses only commands and charging-profile bodies, to rewrite response_url), nor on a paginated GET whose"
        " Link the receiver made usable (hub/relay.py rebuilds an unusable one from the page's size).",
    ]
    by_command = {name: sc.redis_by_command() for name, sc in s.items() if sc.redis}
    lines += ["", "## Redis commands per 1k requests, by command, beyond idle (medians)", "", "```json"]
    lines += [_json(by_command), "```"]
    lines += ["", "## Paginated lists: the check before the load", "", "```json", _json(info["paginated"]), "```"]
    store = {**e2e["holdings"], "memory": store_memory}
    lines += ["", "## Store of broadcast data (GET All via Hub, open routing)", "", "```json", _json(store), "```"]
    lines += ["", "## Message tracking's Redis memory", "", "```json", _json(trace_memory), "```"]
    lines += ["", "## Micro: the routing decision alone", "", "```json", _json(micro), "```"]
    lines += ["", "## Broadcast", "", "```json", _json(broadcast), "```"]
    lines += ["", "## Scale", "", "```json", _json(scale), "```", ""]
    return "\n".join(lines)


def _json(data: Any) -> str:
    import orjson

    return orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode()


def _scale_mem(scale: dict[str, Any], size: int) -> float:
    row = scale.get("sizes", {}).get(str(size))
    if not row:
        return float("nan")
    return float(row["memory"]["snapshot_retained_mb"])


def _propagation(scale: dict[str, Any]) -> float:
    values = [
        float(row["propagation"]["every_worker_s"])
        for row in scale.get("sizes", {}).values()
        if row.get("propagation") and row["propagation"].get("every_worker_s") is not None
    ]
    return max(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run (the test suite's)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--python-generator", action="store_true", help="use the Python load generator")
    parser.add_argument("--output", default=str(Path(__file__).parent / "RESULTS.md"))
    args = parser.parse_args(argv)
    config = Config(
        smoke=args.smoke,
        seconds=0.5 if args.smoke else args.seconds,
        warmup=0.0 if args.smoke else 1.0,
        repeats=1 if args.smoke else args.repeats,
        connections=8 if args.smoke else args.connections,
        prefer_wrk=not args.python_generator,
        output=Path(args.output),
    )
    from benchmarks import broadcast, micro, scale, tracking

    started = time.monotonic()
    micro_figures = micro.run(smoke=config.smoke)
    e2e = asyncio.run(end_to_end(config))
    broadcast_figures = broadcast.run(smoke=config.smoke)
    store_memory = asyncio.run(holdings.memory(*holdings.memory_sizes(config.smoke)))
    scale_figures = scale.run(smoke=config.smoke)
    trace_memory = tracking.run(smoke=config.smoke)
    command = "python -m benchmarks.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    text = render(
        config, e2e, micro_figures, broadcast_figures, store_memory, scale_figures, trace_memory, command.strip()
    )
    config.output.write_text(text)
    print(text)
    print(f"\n(took {time.monotonic() - started:.0f} s; written to {config.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
