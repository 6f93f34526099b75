"""`pareto simulate`: serving from a real subprocess until SIGTERM or SIGINT, and the exit
status and messages of usage and file errors (run in this process, which is faster)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from proxy.cli import main
from proxy.simulator import ThreadedSimulator, build_catalog
from tests.proxy.simulator.helpers import (
    conversation,
    persona,
    recording,
    write_config,
    write_dataset,
    write_jsonl,
)

PARETO = Path(sys.executable).parent / "pareto"
URL_LINE = re.compile(r"at (http://127\.0\.0\.1:(\d+)/v1)$")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PARETO), "simulate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


Launch = Callable[..., "Running"]


class Running:
    def __init__(self, process: subprocess.Popen[str], url: str, banner: list[str]) -> None:
        self.process = process
        self.url = url
        self.banner = banner


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Launch]:
    processes: list[subprocess.Popen[str]] = []

    def launch(*args: str) -> Running:
        process = subprocess.Popen(
            [str(PARETO), "simulate", "--port", "0", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        first = process.stdout.readline().rstrip("\n")
        match = URL_LINE.search(first)
        assert match, (first, process.stderr.read() if process.stderr else "")
        banner = [first]
        while not banner[-1].startswith("Stop with"):
            line = process.stdout.readline()
            assert line, f"the simulator stopped early: {banner}"
            banner.append(line.rstrip("\n"))
        return Running(process, match.group(1), banner)

    yield launch
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_serves_personas_and_replay_then_stops_on_sigterm(tmp_path: Path, start: Launch) -> None:
    write_dataset(tmp_path, 10)
    write_config(tmp_path, [persona("sim-good", flaw_rate=0.0), persona("sim-weak", flaw_rate=0.5)])
    write_jsonl(tmp_path / "replay.jsonl", [recording("gpt-4", "Hi", "Hello!")])

    running = start("--config", "models.yaml", "--replay", "replay.jsonl", "--speed", "100")

    assert "Simulating 3 models at 100x speed at http://127.0.0.1:" in running.banner[0]
    listing = "\n".join(running.banner)
    assert "sim-good  persona, ttft 400 ms, 80 tokens/s, flaw_rate 0 (0/10 flawed)" in listing
    assert "sim-weak  persona" in listing and "(5/10 flawed)" in listing
    assert "gpt-4     replay, 1 recorded turn from replay.jsonl, tokens cl100k_base" in listing

    client = openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0)
    row = conversation(2)
    reply = client.chat.completions.create(model="sim-good", messages=row["messages"])
    assert reply.choices[0].message.content == row["expected"]
    replayed = client.chat.completions.create(
        model="gpt-4", messages=recording("gpt-4", "Hi", "")["messages"]
    )
    assert replayed.choices[0].message.content == "Hello!"
    assert httpx.get(running.url.removesuffix("/v1") + "/health").json()["status"] == "ok"

    started = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert running.process.stdout is not None
    assert "Simulator stopped." in running.process.stdout.read()


def test_sigint_stops_it_too(tmp_path: Path, start: Launch) -> None:
    write_jsonl(tmp_path / "replay.jsonl", [recording("gpt-4", "Hi", "Hello!")])
    running = start("--replay", "replay.jsonl")
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(timeout=10) == 0


def simulate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cwd: Path, *args: str
) -> tuple[int, str, str]:
    """Run `pareto simulate` in this process (for the commands that exit at once)."""
    monkeypatch.chdir(cwd)
    try:
        status = main(["simulate", *args])
    except SystemExit as exc:
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def simulate_here(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Run:
    return lambda *args: simulate(monkeypatch, capsys, tmp_path, *args)


def test_needs_config_or_replay(simulate_here: Run) -> None:
    status, _out, err = simulate_here()
    assert status == 2
    assert "needs models: give --config FILE (personas), --replay FILE" in err


def test_profile_needs_replay(tmp_path: Path, simulate_here: Run) -> None:
    write_dataset(tmp_path, 2)
    write_config(tmp_path, [persona("a")])
    status, _, err = simulate_here("--config", "models.yaml", "--profile", "p.yaml")
    assert status == 2
    assert "--profile sets the latency of replayed models" in err


def test_invalid_config_exits_2_naming_key_and_value(tmp_path: Path, simulate_here: Run) -> None:
    write_dataset(tmp_path, 2)
    write_config(tmp_path, [persona("a", flaw_rate=3)])
    status, out, err = simulate_here("--config", "models.yaml")
    assert status == 2
    assert "error: cannot start the simulator:" in err
    assert "models.yaml: models[0].flaw_rate: must be between 0 and 1, got 3" in err
    assert out == ""


def test_malformed_replay_exits_2_with_file_and_line(tmp_path: Path, simulate_here: Run) -> None:
    write_jsonl(tmp_path / "replay.jsonl", [recording("m", "q", "a"), "{broken"])
    status, _, err = simulate_here("--replay", "replay.jsonl")
    assert status == 2
    assert "replay.jsonl:2: invalid JSON" in err


def test_missing_files_exit_2(simulate_here: Run) -> None:
    status, _, err = simulate_here("--config", "nothing.yaml", "--replay", "none.jsonl")
    assert status == 2
    assert "nothing.yaml: cannot read the file" in err
    assert "none.jsonl: cannot read the replay file" in err


def test_bad_profile_file_exits_2(tmp_path: Path, simulate_here: Run) -> None:
    write_jsonl(tmp_path / "replay.jsonl", [recording("m", "q", "a")])
    (tmp_path / "profile.yaml").write_text("m: {ttft_ms: -5, tokens_per_second: 10}\n")
    status, _, err = simulate_here("--replay", "replay.jsonl", "--profile", "profile.yaml")
    assert status == 2
    assert "profile.yaml: m.ttft_ms: must be at least 0, got -5" in err


def test_name_clash_exits_2(tmp_path: Path, simulate_here: Run) -> None:
    write_dataset(tmp_path, 2)
    write_config(tmp_path, [persona("gpt-4")])
    write_jsonl(tmp_path / "replay.jsonl", [recording("gpt-4", "q", "a")])
    status, _, err = simulate_here("--config", "models.yaml", "--replay", "replay.jsonl")
    assert status == 2
    assert "'gpt-4' is used twice" in err


@pytest.mark.parametrize("speed", ["0", "-1", "fast", "inf"])
def test_bad_speed_is_a_usage_error(simulate_here: Run, speed: str) -> None:
    status, _, err = simulate_here("--replay", "x.jsonl", "--speed", speed)
    assert status == 2
    assert "--speed" in err


def test_taken_port_exits_1(tmp_path: Path, simulate_here: Run) -> None:
    replay = write_jsonl(tmp_path / "replay.jsonl", [recording("gpt-4", "Hi", "Hello!")])
    with ThreadedSimulator(build_catalog(None, [replay])) as taken:
        status, _, err = simulate_here("--replay", "replay.jsonl", "--port", str(taken.port))
    assert status == 1
    assert f"error: cannot listen on 127.0.0.1:{taken.port}" in err


def test_help_lists_the_options(simulate_here: Run) -> None:
    status, out, _ = simulate_here("--help")
    assert status == 0
    for option in ("--config", "--replay", "--profile", "--host", "--port", "--speed"):
        assert option in out
