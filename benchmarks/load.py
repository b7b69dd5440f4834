"""Load generators: wrk (Debian package) with a Lua script for the OCPI headers, and a Python fallback whose own
ceiling the runner measures and reports. Each run also samples the server's CPU seconds and peak RSS.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

import psutil

LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True, slots=True)
class Load:
    """One load run's figures."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_seconds: float
    peak_rss_mb: float
    tool: str
    #: Share of the whole machine's CPU time that was busy during the run (all processes, kernel included).
    machine_busy: float = 0.0

    @property
    def cpu_per_10k(self) -> float:
        return self.cpu_seconds / self.requests * 10_000 if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""


class ResourceSampler:
    """CPU seconds used and peak RSS of a set of processes (and their children) while a run lasts."""

    def __init__(self, pids: list[int]) -> None:
        self.processes = [psutil.Process(p) for p in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _all(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for proc in self.processes:
            try:
                for each in (proc, *proc.children(recursive=True)):
                    found.setdefault(each.pid, each)  # a pid given and also a child of another: count it once
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def _cpu(self) -> float:
        total = 0.0
        for proc in self._all():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            rss = 0
            for proc in self._all():
                try:
                    rss += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak = max(self.peak, rss)

    def __enter__(self) -> ResourceSampler:
        self.machine_start = psutil.cpu_times()
        self.cpu_start = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu_used = self._cpu() - self.cpu_start
        end = psutil.cpu_times()
        total = sum(end) - sum(self.machine_start)
        idle = (end.idle + end.iowait) - (self.machine_start.idle + self.machine_start.iowait)
        self.machine_busy = 1 - idle / total if total > 0 else 0.0


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua(request: Request) -> str:
    lines = [f'wrk.method = "{request.method}"']
    for name, value in request.headers.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    if request.body:
        lines.append("wrk.body = [==[" + request.body.decode() + "]==]")
    return "\n".join(lines) + "\n"


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * LATENCY_UNITS[match.group(2)]


def run_wrk(request: Request, connections: int, seconds: float, pids: list[int], threads: int = 1) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(request))
    duration = max(1, round(seconds))  # wrk takes whole seconds
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", script.name]
    with ResourceSampler(pids) as sampler:
        out = subprocess.run([*args, request.url], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]  # wrk always prints it
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]  # same
    # The "Latency Distribution" lines; "Req/Sec ... 68.50%" elsewhere must not match.
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]  # --latency
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]  # same
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Load(
        total, duration, rps, p50, p99, errors, sampler.cpu_used, sampler.peak / 2**20, "wrk", sampler.machine_busy
    )


def run_python(request: Request, connections: int, seconds: float, pids: list[int]) -> Load:
    """The fallback generator: aiohttp keep-alive clients in one process (its own ceiling is measured too)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.request(
                request.method, request.url, headers=request.headers, data=request.body or None
            ) as r:
                await r.read()
                if r.status >= 400:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    async def main() -> float:
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.monotonic()
            await asyncio.gather(*(worker(session, started + seconds) for _ in range(connections)))
            return time.monotonic() - started

    # Its own thread and event loop: the caller may be inside a running loop (benchmarks/run.py is).
    result: list[float] = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(main())))
    with ResourceSampler(pids) as sampler:
        runner.start()
        runner.join()
    elapsed = result[0]
    latencies.sort()
    n = len(latencies)
    p50 = latencies[n // 2] * 1000 if n else float("nan")
    p99 = latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan")
    return Load(
        n,
        elapsed,
        n / elapsed,
        p50,
        p99,
        errors,
        sampler.cpu_used,
        sampler.peak / 2**20,
        "python",
        sampler.machine_busy,
    )


def run_load(request: Request, connections: int, seconds: float, pids: list[int], prefer_wrk: bool = True) -> Load:
    if prefer_wrk and have_wrk():
        return run_wrk(request, connections, seconds, pids)
    return run_python(request, connections, seconds, pids)
