# One image: the gateway and its command line, installed from the locked
# runtime dependencies, each checked against its SHA-256 hash.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True

WORKDIR /app

COPY requirements-runtime.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements-runtime.lock

COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY evaluator ./evaluator
COPY policies ./policies
COPY config ./config
# The locked setuptools builds the package: an isolated build would fetch one unchecked.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --create-home --uid 10001 pareto \
    && mkdir -p /data && chown pareto /data

USER pareto
# The default SQLite file lands in /data; mount a volume there to keep it.
WORKDIR /data
EXPOSE 4000
CMD ["pareto", "serve", "--config", "/app/config.yaml", "--host", "0.0.0.0", "--port", "4000"]
