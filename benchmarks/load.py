"""Load the gateway for a while and check that nothing is lost: errors, request rows and memory.

Starts, each in its own process and all on 127.0.0.1: an upstream with a model's latency
(benchmarks/load_upstream.py: 50-200 ms to the first token, then 20 tokens at 10 ms each),
`pareto serve` (one worker, request record on), and the load generator
(benchmarks/load_client.py), which keeps --connections connections busy for --seconds seconds
with half of the requests streamed. A warm-up at the same concurrency comes first, so that the
memory measured at the start is the gateway's working size.

    python benchmarks/load.py [--seconds 60] [--connections 64] [--database-url URL] [--json]

Passes when no request failed, the database holds one new request row per request sent
(warm-up included), and the gateway's resident memory (RSS) grew by less than 10% from the end
of the warm-up to the end of the run. Exits 1 otherwise. The database is a new SQLite file in a
temporary folder unless --database-url names another; rows already there are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "sk-load-master-key"
MAX_RSS_GROWTH = 0.10
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0


@dataclass
class LoadReport:
    """The figures of one load run; `failures` lists each missed condition."""

    seconds: float
    connections: int
    database: str
    sent: int
    warmup_sent: int
    errors: dict[str, int]
    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    stream_ttft_p50_ms: float | None
    rss_start_mb: float
    rss_end_mb: float
    rows: int
    gateway_exit_code: int
    failures: list[str]

    @property
    def rss_growth(self) -> float:
        return self.rss_end_mb / self.rss_start_mb - 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"error: {url} exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"error: {url} did not respond within {START_TIMEOUT_SECONDS:g} s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"error: no VmRSS line in /proc/{pid}/status")


def count_rows(database_url: str) -> int:
    """Count the request rows, 0 when the table does not exist yet."""
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM request_log")).scalar_one())
    except SQLAlchemyError:
        return 0
    finally:
        engine.dispose()


def gateway_config(upstream_port: int) -> str:
    return f"""
model_list:
  - model_name: bench
    litellm_params:
      model: openai/load-model
      api_base: http://127.0.0.1:{upstream_port}/v1
    model_info:
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
general_settings:
  master_key: {MASTER_KEY}
"""


def start(
    command: list[str], workdir: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            command, cwd=workdir, stdout=handle, stderr=subprocess.STDOUT, env=env
        )


def stop(process: subprocess.Popen[bytes]) -> int:
    """Send SIGTERM and return the exit code; kill the process if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -signal.SIGKILL


def drive(url: str, connections: int, seconds: float) -> dict[str, Any]:
    """Run the load generator in its own process and return its JSON result."""
    command = [
        sys.executable, str(ROOT / "benchmarks/load_client.py"), url,
        "--key", MASTER_KEY, "--connections", str(connections), "--seconds", f"{seconds:g}",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise SystemExit(f"error: the load generator failed:\n{output.stderr}")
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def measure(args: argparse.Namespace, workdir: Path) -> LoadReport:
    database_url = args.database_url or f"sqlite:///{workdir / 'load.db'}"
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("PARETO_CONFIG", None)
    upstream_port, gateway_port = free_port(), free_port()
    upstream_command = [
        sys.executable, str(ROOT / "benchmarks/load_upstream.py"), str(upstream_port),
        "--ttft-ms", args.ttft_ms, "--tokens", str(args.tokens), "--token-ms", f"{args.token_ms:g}",
    ]  # fmt: skip
    upstream_log = workdir / "upstream.log"
    upstream = start(upstream_command, workdir, upstream_log, env)
    config = workdir / "pareto.yaml"
    config.write_text(gateway_config(upstream_port))
    pareto = str(Path(sys.executable).with_name("pareto"))
    gateway_log = workdir / "pareto.log"
    gateway = start(
        [pareto, "serve", "--config", str(config), "--port", str(gateway_port)],
        workdir, gateway_log, env,
    )  # fmt: skip
    try:
        wait_until_up(f"http://127.0.0.1:{upstream_port}/v1/models", upstream, upstream_log)
        wait_until_up(f"http://127.0.0.1:{gateway_port}/health/liveliness", gateway, gateway_log)
        rows_before = count_rows(database_url)
        url = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"

        warmup = drive(url, args.connections, args.warmup_seconds)
        rss_start = rss_mb(gateway.pid)
        result = drive(url, args.connections, args.seconds)
        rss_end = rss_mb(gateway.pid)
    finally:
        exit_code = stop(gateway)
        stop(upstream)
    rows = count_rows(database_url) - rows_before

    errors: dict[str, int] = dict(warmup["errors"])
    for kind, count in result["errors"].items():
        errors[kind] = errors.get(kind, 0) + count
    sent = warmup["sent"] + result["sent"]
    report = LoadReport(
        seconds=result["seconds"],
        connections=args.connections,
        database=database_url.split(":", 1)[0],
        sent=result["sent"],
        warmup_sent=warmup["sent"],
        errors=errors,
        requests_per_second=result["sent"] / result["seconds"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        stream_ttft_p50_ms=result["stream_ttft_p50_ms"],
        rss_start_mb=rss_start,
        rss_end_mb=rss_end,
        rows=rows,
        gateway_exit_code=exit_code,
        failures=[],
    )
    if errors:
        report.failures.append(f"{sum(errors.values())} requests failed: {errors}")
    if rows != sent:
        report.failures.append(f"{rows} request rows for {sent} requests sent")
    if report.rss_growth >= MAX_RSS_GROWTH:
        report.failures.append(
            f"RSS grew by {report.rss_growth:.1%}, from {rss_start:.1f} MB to {rss_end:.1f} MB"
        )
    if exit_code != 0:
        report.failures.append(f"pareto serve exited with {exit_code} after SIGTERM")
    return report


def print_report(report: LoadReport) -> None:
    total = report.sent + report.warmup_sent
    lines = [
        f"load: {report.connections} connections for {report.seconds:.1f} s, "
        f"half streamed, database {report.database}",
        f"requests/s          {report.requests_per_second:.1f}",
        f"requests sent       {report.sent} (+{report.warmup_sent} in the warm-up)",
        f"errors              {sum(report.errors.values())}",
        f"latency p50 / p99   {_ms(report.p50_ms)} / {_ms(report.p99_ms)} ms",
        f"stream TTFT p50     {_ms(report.stream_ttft_p50_ms)} ms",
        f"RSS start / end     {report.rss_start_mb:.1f} / {report.rss_end_mb:.1f} MB "
        f"({report.rss_growth:+.1%})",
        f"request rows        {report.rows} for {total} requests",
    ]
    print("\n".join(lines))
    for failure in report.failures:
        print(f"FAILED: {failure}")
    if not report.failures:
        print("passed: no errors, one row per request, RSS growth under 10%")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured run")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument(
        "--warmup-seconds", type=float, default=10.0, help="length of the warm-up run"
    )
    parser.add_argument(
        "--database-url",
        help="the gateway's database (default: a new SQLite file in a temporary folder)",
    )
    parser.add_argument(
        "--ttft-ms", default="50-200", help="upstream time to first token, LOW-HIGH"
    )
    parser.add_argument(
        "--tokens", type=int, default=20, help="upstream completion tokens per response"
    )
    parser.add_argument("--token-ms", type=float, default=10.0, help="upstream ms per token")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pareto-load-") as folder:
        report = measure(args, Path(folder))
    if args.json:
        print(json.dumps({**asdict(report), "rss_growth": report.rss_growth}))
    else:
        print_report(report)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
