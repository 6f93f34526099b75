"""Demo traffic: support conversations sent through the gateway with the `openai` client."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai

REQUEST_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome:
    """The result of one request: its status, the model that served it, and its duration."""

    status: int
    served_model: str | None
    stream: bool
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


class Traffic:
    """Sends conversations to one model name through the gateway, some of them streamed."""

    def __init__(self, base_url: str, api_key: str, model: str, concurrency: int = 8) -> None:
        self.model = model
        self.concurrency = concurrency
        self._client = openai.OpenAI(
            base_url=f"{base_url}/v1",
            api_key=api_key,
            max_retries=0,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )

    def send(
        self,
        conversations: Sequence[list[dict[str, Any]]],
        on_done: Callable[[Outcome], None] | None = None,
    ) -> list[Outcome]:
        """Send every conversation once; every other one streams. Outcomes keep their order."""

        def one(index: int) -> Outcome:
            outcome = self._request(conversations[index], stream=index % 2 == 1)
            if on_done is not None:
                on_done(outcome)
            return outcome

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="demo-traffic") as pool:
            return list(pool.map(one, range(len(conversations))))

    def close(self) -> None:
        self._client.close()

    def _request(self, conversation: list[dict[str, Any]], *, stream: bool) -> Outcome:
        messages: Any = conversation  # the client's message types are TypedDicts
        started = time.perf_counter()
        completions = self._client.chat.completions.with_raw_response
        try:
            if stream:
                streamed = completions.create(
                    model=self.model,
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                for _chunk in streamed.parse():
                    pass
                status, headers = streamed.status_code, streamed.headers
            else:
                whole = completions.create(model=self.model, messages=messages)
                whole.parse()
                status, headers = whole.status_code, whole.headers
        except openai.APIStatusError as exc:
            return Outcome(exc.status_code, None, stream, time.perf_counter() - started, str(exc))
        except openai.APIError as exc:
            return Outcome(0, None, stream, time.perf_counter() - started, str(exc))
        served = headers.get("x-pareto-model")
        return Outcome(status, served, stream, time.perf_counter() - started)
