"""Measure what the gateway adds to each call: throughput, added latency and memory.

Runs, in one process tree and side by side, wrk against a fast local upstream directly and
through `pareto serve` (one worker, request record on, INFO logging to a file), at 1 and at 16
connections, alternating the settings for several rounds and reporting medians. The gateway is
measured twice: with requests naming the model, and with requests naming a policy, which adds
the route-table lookup and the sampling decision (1% of requests become benchmark cases).
When a LiteLLM proxy executable is found (see --litellm), it is measured on the same upstream
at 16 connections too.

    python benchmarks/proxy_overhead.py [--seconds 10] [--rounds 3] [--litellm PATH]

Needs wrk (Debian package `wrk`). Prints one table and the targets, and exits 1 when a target is
missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-bench-master-key"
BODY = '{"model":"bench","messages":[{"role":"user","content":"Say ok."}]}'
# The same request naming a policy: routed through the route table to its current model.
POLICY_BODY = '{"model":"bench-policy","messages":[{"role":"user","content":"Say ok."}]}'

TARGET_RPS_16 = 4000.0
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0
TARGET_RSS_MB = 150.0
TARGET_LITELLM_RATIO = 20.0

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "socket_errors": %%d, "non2xx": %%d, ' ..
    '"p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"error: {url} did not answer within {timeout:g} s")


def run_wrk(script: Path, url: str, connections: int, seconds: float) -> Sample:
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(script), url,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    duration = result["duration_us"] / 1e6
    return Sample(
        rps=result["requests"] / duration,
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        requests=result["requests"],
        errors=result["socket_errors"] + result["non2xx"],
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median(samples: list[Sample], field: str) -> float:
    return statistics.median(getattr(sample, field) for sample in samples)


def pareto_config(upstream_port: int) -> str:
    return (
        litellm_config(upstream_port)
        + """
policies:
  bench-policy:
    reference: bench
    candidates: [bench]
    sample_rate: 0.01
    judge: checks
"""
    )


def litellm_config(upstream_port: int) -> str:
    return f"""
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench-model
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: sk-bench-upstream
    model_info:
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: {MASTER_KEY}
"""


def start(
    command: list[str], workdir: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(command, cwd=workdir, stdout=handle, stderr=subprocess.STDOUT, env=env)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def find_litellm(explicit: str | None) -> str | None:
    if explicit:
        if not Path(explicit).exists():
            raise SystemExit(f"error: --litellm {explicit}: no such file")
        return explicit
    for candidate in (ROOT / ".bench-litellm/bin/litellm", shutil.which("litellm")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description="Gateway overhead against a fast upstream.")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per setting")
    parser.add_argument(
        "--litellm",
        help="path of LiteLLM proxy's `litellm` executable "
        "(default: .bench-litellm/bin/litellm or `litellm` on PATH)",
    )
    parser.add_argument("--skip-litellm", action="store_true", help="do not measure LiteLLM proxy")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk is not installed; install it with `apt-get install wrk`")

    workdir = Path(tempfile.mkdtemp(prefix="pareto-bench-"))
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % {"body": BODY, "key": MASTER_KEY})
    policy_script = workdir / "policy.lua"
    policy_script.write_text(WRK_SCRIPT % {"body": POLICY_BODY, "key": MASTER_KEY})
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}"}

    upstream_port, pareto_port = free_port(), free_port()
    upstream = start(
        [sys.executable, str(ROOT / "benchmarks/fast_upstream.py"), str(upstream_port)],
        workdir, workdir / "upstream.log", env,
    )  # fmt: skip
    config = workdir / "pareto.yaml"
    config.write_text(pareto_config(upstream_port))
    pareto_bin = str(Path(sys.executable).with_name("pareto"))
    gateway = start(
        [pareto_bin, "serve", "--config", str(config), "--port", str(pareto_port)],
        workdir, workdir / "pareto.log", env,
    )  # fmt: skip
    processes = [upstream, gateway]
    try:
        wait_until_up(f"http://127.0.0.1:{pareto_port}/health/liveliness")
        direct_url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
        pareto_url = f"http://127.0.0.1:{pareto_port}/v1/chat/completions"
        run_wrk(script, direct_url, 16, 2)
        warmup = run_wrk(script, pareto_url, 16, 2)

        results: dict[tuple[str, int], list[Sample]] = {}
        for _ in range(args.rounds):
            for connections in (1, 16):
                settings = (
                    ("direct", direct_url, script),
                    ("pareto", pareto_url, script),
                    ("pareto policy", pareto_url, policy_script),
                )
                for name, url, body_script in settings:
                    sample = run_wrk(body_script, url, connections, args.seconds)
                    results.setdefault((name, connections), []).append(sample)
        rss = peak_rss_mb(gateway.pid)

        litellm_samples: list[Sample] = []
        litellm_bin = None if args.skip_litellm else find_litellm(args.litellm)
        if litellm_bin is not None:
            litellm_samples = measure_litellm(litellm_bin, upstream_port, workdir, script, args)
    finally:
        for process in processes:
            stop(process)

    measured = [
        sample
        for (name, _), runs in results.items()
        if name.startswith("pareto")
        for sample in runs
    ]
    sent = warmup.requests + sum(sample.requests for sample in measured)
    rows = count_rows(workdir / "bench.db")
    return report(results, rss, litellm_samples, args, sent, rows)


def measure_litellm(
    executable: str, upstream_port: int, workdir: Path, script: Path, args: argparse.Namespace
) -> list[Sample]:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(upstream_port))
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("DATABASE_URL", None)
    process = start(
        [executable, "--config", str(config), "--port", str(port), "--num_workers", "1"],
        workdir, workdir / "litellm.log", env,
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health/liveliness", timeout=120)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        run_wrk(script, url, 16, 2)
        return [run_wrk(script, url, 16, args.seconds) for _ in range(args.rounds)]
    finally:
        stop(process)


def count_rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM request_log").fetchone()
        return int(count)


def report(
    results: dict[tuple[str, int], list[Sample]],
    rss: float,
    litellm: list[Sample],
    args: argparse.Namespace,
    sent: int,
    rows: int,
) -> int:
    print(f"rounds: {args.rounds} x {args.seconds:g} s per setting, medians shown; wrk -t1")
    print(f"{'setting':<28}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for (name, connections), samples in sorted(results.items(), key=lambda item: item[0][1]):
        label = f"{name}, {connections} connection{'s' if connections > 1 else ''}"
        errors = sum(sample.errors for sample in samples)
        print(
            f"{label:<28}{median(samples, 'rps'):>12,.0f}{median(samples, 'p50_ms'):>10.3f}"
            f"{median(samples, 'p99_ms'):>10.3f}{errors:>8}"
        )
    if litellm:
        errors = sum(sample.errors for sample in litellm)
        print(
            f"{'litellm proxy, 16 connections':<28}{median(litellm, 'rps'):>12,.0f}"
            f"{median(litellm, 'p50_ms'):>10.3f}{median(litellm, 'p99_ms'):>10.3f}{errors:>8}"
        )

    direct_1 = results[("direct", 1)]
    failures = sum(sample.errors for samples in results.values() for sample in samples)
    checks = []
    for name in ("pareto", "pareto policy"):
        added_p50 = median(results[(name, 1)], "p50_ms") - median(direct_1, "p50_ms")
        added_p99 = median(results[(name, 1)], "p99_ms") - median(direct_1, "p99_ms")
        rps = median(results[(name, 16)], "rps")
        checks += [
            (f"{name}: requests/s at 16 connections: {rps:,.0f}", rps >= TARGET_RPS_16,
             f">= {TARGET_RPS_16:,.0f}"),
            (f"{name}: added p50 latency at 1 connection: {added_p50:.3f} ms",
             added_p50 <= TARGET_ADDED_P50_MS, f"<= {TARGET_ADDED_P50_MS} ms"),
            (f"{name}: added p99 latency at 1 connection: {added_p99:.3f} ms",
             added_p99 <= TARGET_ADDED_P99_MS, f"<= {TARGET_ADDED_P99_MS} ms"),
        ]  # fmt: skip
    rps_16 = median(results[("pareto", 16)], "rps")
    checks += [
        (f"peak RSS of the gateway: {rss:.1f} MB", rss < TARGET_RSS_MB, f"< {TARGET_RSS_MB:g} MB"),
        (f"request rows written: {rows:,} of {sent:,} requests sent", rows >= sent, "all"),
        (f"failed requests: {failures}", failures == 0, "0"),
    ]  # fmt: skip
    if litellm:
        ratio = rps_16 / median(litellm, "rps")
        checks.append(
            (f"throughput against LiteLLM proxy: {ratio:.1f}x", ratio >= TARGET_LITELLM_RATIO,
             f">= {TARGET_LITELLM_RATIO:g}x")
        )  # fmt: skip
    else:
        print("LiteLLM proxy not found: pass --litellm PATH to compare")
    print()
    failed = 0
    for text, passed, target in checks:
        failed += not passed
        print(f"{'PASS' if passed else 'FAIL'}  {text} (target {target})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
