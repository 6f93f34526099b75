"""Calls to providers with their own wire format (Anthropic, Gemini, Bedrock, ...) via litellm.

`import litellm` takes seconds and, unless LITELLM_LOCAL_MODEL_COST_MAP is set first, fetches a
price map from the network. So litellm is imported here, on the first translated call, and
never by the gateway's start or its OpenAI-compatible path.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import orjson

from proxy.deployments import Deployment
from proxy.upstream import JsonReply, UpstreamFailure

_litellm: Any = None


def _load_litellm() -> Any:
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        _litellm = litellm
    return _litellm


def _arguments(
    deployment: Deployment, payload: dict[str, Any], drop_params: bool
) -> dict[str, Any]:
    arguments = dict(deployment.litellm_extra)
    for key, value in deployment.defaults.items():
        arguments.setdefault(key, value)
    arguments.update(payload)
    arguments.pop("stream_options", None)
    arguments.update(
        model=deployment.litellm_model,
        api_key=deployment.api_key,
        api_base=deployment.api_base,
        timeout=deployment.timeout,
        num_retries=0,
        max_retries=0,
        drop_params=drop_params,
    )
    if deployment.headers:
        extra = {k: v for k, v in deployment.headers.items() if k.lower() != "authorization"}
        extra.pop("Content-Type", None)
        if extra:
            arguments["extra_headers"] = extra
    return {key: value for key, value in arguments.items() if value is not None}


async def call_json(
    deployment: Deployment, payload: dict[str, Any], endpoint: str, drop_params: bool
) -> JsonReply:
    """Call the provider through litellm and return an OpenAI-shaped answer."""
    litellm = _load_litellm()
    arguments = _arguments(deployment, payload, drop_params)
    arguments.pop("stream", None)
    try:
        if endpoint == "embeddings":
            response = await litellm.aembedding(**arguments)
        else:
            response = await litellm.acompletion(**arguments)
    except Exception as exc:
        raise _failure(exc) from exc
    data = response.model_dump(exclude_none=False)
    return JsonReply(orjson.dumps(data), data)


class TranslatedStream:
    """A litellm stream presented as server-sent event bytes."""

    def __init__(self, iterator: AsyncIterator[Any]) -> None:
        self._iterator = iterator

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._iterator:
                yield _event(chunk)
        except Exception as exc:
            raise _failure(exc) from exc
        yield b"data: [DONE]\n\n"

    def close(self) -> None:
        # NOTE: litellm's stream wrapper has no synchronous close; its provider connection is
        # released when the iterator is garbage collected.
        return


async def open_stream(
    deployment: Deployment, payload: dict[str, Any], drop_params: bool
) -> tuple[TranslatedStream, bytes]:
    """Start a litellm stream and return it with its first event."""
    litellm = _load_litellm()
    arguments = _arguments(deployment, payload, drop_params)
    arguments["stream"] = True
    arguments["stream_options"] = {"include_usage": True}
    try:
        response = await litellm.acompletion(**arguments)
        iterator = response.__aiter__()
        first = await iterator.__anext__()
    except StopAsyncIteration as exc:
        raise UpstreamFailure("invalid_response", "the provider sent an empty stream") from exc
    except Exception as exc:
        raise _failure(exc) from exc
    return TranslatedStream(iterator), _event(first)


def _event(chunk: Any) -> bytes:
    return b"data: " + orjson.dumps(chunk.model_dump(exclude_none=True)) + b"\n\n"


def _failure(exc: Exception) -> UpstreamFailure:
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", None) or exc)
    name = type(exc).__name__
    if name in {"Timeout", "APITimeoutError"} or status == 408:
        return UpstreamFailure("timeout", message, status=408)
    if name in {"APIConnectionError", "ServiceUnavailableError"} and status in (None, 500, 503):
        return UpstreamFailure("connection", message, status=status)
    if isinstance(status, int):
        return UpstreamFailure(
            "status",
            message,
            status=status,
            code="context_length_exceeded" if name == "ContextWindowExceededError" else None,
        )
    return UpstreamFailure("connection", f"{name}: {message}")
