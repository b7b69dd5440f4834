"""The benchmark command: micro, end to end, broadcast and scale, in one go, written to benchmarks/RESULTS.md.

Run: ``python -m benchmarks.run`` (about 6 minutes on 2 cores; ``--smoke`` takes seconds and is what the test
suite runs so this never rots). Everything talks to 127.0.0.1 only and every process is stopped by its PID.

End to end, in the same run and so as ratios: a fast stub party alone (direct), the naive reference proxy
(benchmarks/naive_proxy.py) and the hub with 1 and 2 workers, each under the same load generator — wrk when
installed (Debian package ``wrk``), else the Python generator whose own ceiling is measured first.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import topology
from benchmarks.load import Load, Request, have_wrk, run_load
from tests.support.fake_party import token_header

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

    def median(self, attr: str) -> float:
        return float(statistics.median(float(getattr(r, attr)) for r in self.runs))

    @property
    def rps(self) -> float:
        return self.median("rps")


def routed_headers(token: str, to: tuple[str, str], sender: tuple[str, str]) -> dict[str, str]:
    return {
        "Authorization": token_header(token),
        "OCPI-from-country-code": sender[0],
        "OCPI-from-party-id": sender[1],
        "OCPI-to-country-code": to[0],
        "OCPI-to-party-id": to[1],
        "X-Request-ID": "bench-request",
        "X-Correlation-ID": "bench-correlation",
        "Content-Type": "application/json",
    }


def measure(
    config: Config, scenario: Scenario, request: Request, pids: list[int], connections: int | None = None
) -> None:
    conns = connections or config.connections
    if config.warmup:
        run_load(request, conns, config.warmup, pids, config.prefer_wrk)
    scenario.runs.append(run_load(request, conns, config.seconds, pids, config.prefer_wrk))


async def end_to_end(config: Config) -> dict[str, Any]:
    """Direct, naive proxy and hub (1 and 2 workers), GET and 1.5 KB PUT, interleaved repeats; medians."""
    results: dict[str, Scenario] = {}

    def scenario(name: str) -> Scenario:
        return results.setdefault(name, Scenario(name))

    info: dict[str, Any] = {}
    with topology.stub() as stub_port:
        direct_get = Request("GET", f"http://127.0.0.1:{stub_port}/ocpi/2.2.1/locations/sender/LOC1", {})
        direct_put = Request(
            "PUT",
            f"http://127.0.0.1:{stub_port}/ocpi/2.2.1/locations/receiver/NL/CPO/LOC1",
            {"Content-Type": "application/json"},
            PUT_BODY,
        )
        if not (config.prefer_wrk and have_wrk()):
            ceiling = run_load(direct_get, config.connections, config.seconds, [], prefer_wrk=False)
            info["generator_ceiling_rps"] = round(ceiling.rps)
        with topology.naive_proxy(stub_port) as (naive_port, naive_pid):
            naive_get = Request("GET", f"http://127.0.0.1:{naive_port}/ocpi/2.2.1/locations/sender/LOC1", {})
            naive_put = Request(
                "PUT",
                f"http://127.0.0.1:{naive_port}/ocpi/2.2.1/locations/receiver/NL/CPO/LOC1",
                {"Content-Type": "application/json"},
                PUT_BODY,
            )
            async with topology.hub(stub_port, workers=1) as hub1:
                hub_get = Request(
                    "GET",
                    hub1.hub_url + "/ocpi/2.2.1/sender/locations/LOC1",
                    routed_headers(hub1.emsp_token, ("NL", "CPO"), ("BE", "EMP")),
                )
                hub_put = Request(
                    "PUT",
                    hub1.hub_url + "/ocpi/2.2.1/receiver/locations/NL/CPO/LOC1",
                    routed_headers(hub1.cpo_token, ("BE", "EMP"), ("NL", "CPO")),
                    PUT_BODY,
                )
                # Redis commands the hub sends while idle (snapshot polls, lease, liveness) and under load: the
                # difference, per routed request, is what the hot path costs Redis (the design says: nothing).
                idle_before = await topology.redis_calls(hub1)
                await asyncio.sleep(config.seconds)
                idle = await topology.redis_calls(hub1) - idle_before
                for round_ in range(config.repeats):
                    measure(config, scenario("direct GET"), direct_get, [])
                    measure(config, scenario("naive proxy GET (1 worker)"), naive_get, [naive_pid])
                    load_before = await topology.redis_calls(hub1)
                    measure(config, scenario("hub GET (1 worker)"), hub_get, hub1.hub_pids)
                    if round_ == 0:
                        loaded = await topology.redis_calls(hub1) - load_before
                        run = scenario("hub GET (1 worker)").runs[-1]
                        info["redis_idle_commands_per_s"] = round(idle / config.seconds, 2)
                        info["redis_load_commands_per_s"] = round(loaded / (run.seconds + config.warmup), 2)
                        extra = loaded - idle * (run.seconds + config.warmup) / config.seconds
                        info["redis_commands_per_1k_routed"] = round(max(extra, 0.0) / max(run.requests, 1) * 1000, 3)
                    measure(config, scenario("direct PUT 1.5 KB"), direct_put, [])
                    measure(config, scenario("naive proxy PUT 1.5 KB"), naive_put, [naive_pid])
                    measure(config, scenario("hub PUT 1.5 KB (1 worker)"), hub_put, hub1.hub_pids)
                # Latency at one connection: what the hub adds to a request.
                measure(config, scenario("direct GET, 1 connection"), direct_get, [], connections=1)
                measure(config, scenario("hub GET, 1 connection (1 worker)"), hub_get, hub1.hub_pids, connections=1)
            async with topology.hub(stub_port, workers=2) as hub2:
                hub2_get = Request(
                    "GET",
                    hub2.hub_url + "/ocpi/2.2.1/sender/locations/LOC1",
                    routed_headers(hub2.emsp_token, ("NL", "CPO"), ("BE", "EMP")),
                )
                for _ in range(config.repeats):
                    measure(config, scenario("hub GET (2 workers)"), hub2_get, hub2.hub_pids)
    return {"scenarios": results, "info": info}


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


def render(
    config: Config,
    e2e: dict[str, Any],
    micro: dict[str, Any],
    broadcast: dict[str, Any],
    scale: dict[str, Any],
    command: str,
) -> str:
    s: dict[str, Scenario] = e2e["scenarios"]
    info = e2e["info"]
    m = machine()
    tool = s["direct GET"].runs[0].tool
    lines = [
        "# ocpi-hub benchmark results",
        "",
        "Written by `python -m benchmarks.run`; do not edit by hand.",
        "",
        f"- command: `{command}`",
        f"- machine: {m['cpus']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}",
        f"- date: {m['date']}",
        f"- load generator: {tool}, {config.connections} connections, {config.seconds:g} s per run after "
        f"{config.warmup:g} s warm-up, median of {config.repeats} interleaved runs",
    ]
    lines.append(
        f"- Redis commands the hub sends: {info['redis_idle_commands_per_s']}/s idle (snapshot polls, lease, liveness),"
        f" {info['redis_load_commands_per_s']}/s under routed load"
    )
    if "generator_ceiling_rps" in info:
        lines.append(
            f"- Python load generator ceiling (against the stub directly): {info['generator_ceiling_rps']} req/s"
        )
    lines += [
        "",
        "## End to end (loopback, 1.5 KB OCPI Location)",
        "",
        "| scenario | req/s | p50 ms | p99 ms | server CPU s / 10k req | peak RSS MB | machine CPU busy | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, sc in s.items():
        errors = sum(r.errors for r in sc.runs)
        cpu = "-" if name.startswith("direct") else f"{sc.median('cpu_per_10k'):.2f}"
        rss = "-" if name.startswith("direct") else f"{max(r.peak_rss_mb for r in sc.runs):.0f}"
        p50, p99 = sc.median("p50_ms"), sc.median("p99_ms")
        busy = f"{sc.median('machine_busy') * 100:.0f} %"
        lines.append(f"| {name} | {sc.rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu} | {rss} | {busy} | {errors} |")
    hub1, naive, hub2 = s["hub GET (1 worker)"].rps, s["naive proxy GET (1 worker)"].rps, s["hub GET (2 workers)"].rps
    added = s["hub GET, 1 connection (1 worker)"].median("p50_ms") - s["direct GET, 1 connection"].median("p50_ms")
    put_ratio = s["hub PUT 1.5 KB (1 worker)"].rps / s["naive proxy PUT 1.5 KB"].rps
    targets = [
        ("hub (1 worker) ÷ naive proxy, routed GET", hub1 / naive, "≥ 2", hub1 / naive >= 2),
        ("hub (1 worker) ÷ naive proxy, 1.5 KB PUT", put_ratio, "(info)", True),
        ("hub 2 workers ÷ 1 worker, routed GET", hub2 / hub1, "≥ 1.7", hub2 / hub1 >= 1.7),
        ("hub ÷ direct, routed GET", hub1 / s["direct GET"].rps, "(info)", True),
        ("hub-added p50 latency at 1 connection (ms)", added, "≤ 1", added <= 1.0),
        (
            "Redis commands per 1k routed requests, beyond the idle background rate",
            info["redis_commands_per_1k_routed"],
            "≈ 0",
            info["redis_commands_per_1k_routed"] < 1,
        ),
        ("snapshot memory, 10k parties (MB)", _scale_mem(scale, 10_000), "≤ 50", _scale_mem(scale, 10_000) <= 50),
        (
            "change visible in every worker (s, largest registry measured)",
            _propagation(scale),
            "≤ 1",
            _propagation(scale) <= 1,
        ),
        (
            "broadcast deliveries/s (fan-out to 100)",
            float(broadcast.get("deliveries_per_s", 0)),
            "≥ 5000",
            float(broadcast.get("deliveries_per_s", 0)) >= 5000,
        ),
    ]
    lines += ["", "## Targets", "", "| figure | value | target | met |", "|---|---:|---|---|"]
    for label, value, target, met in targets:
        lines.append(f"| {label} | {value:,.2f} | {target} | {'yes' if met else 'NO'} |")
    lines += [
        "",
        "No body is parsed on a routed GET or PUT (hub/proxy.py reads bodies only to forward them; it"
        " parses only commands and charging-profile bodies, to rewrite response_url).",
    ]
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
    from benchmarks import broadcast, micro, scale

    started = time.monotonic()
    micro_figures = micro.run(smoke=config.smoke)
    e2e = asyncio.run(end_to_end(config))
    broadcast_figures = broadcast.run(smoke=config.smoke)
    scale_figures = scale.run(smoke=config.smoke)
    command = "python -m benchmarks.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    text = render(config, e2e, micro_figures, broadcast_figures, scale_figures, command.strip())
    config.output.write_text(text)
    print(text)
    print(f"\n(took {time.monotonic() - started:.0f} s; written to {config.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
