# syntax=docker/dockerfile:1.7
# One image for every service: `isthmus run --target all|<service>` (and `isthmus-operator`).
# Why one image and not one per service: one codebase and one lock file; the bundled models ship inside
# the Python wheels and are shared by every target (no per-service copies); one build, one vulnerability
# scan and one signature per release. The chart picks the target per Deployment (`--target <service>`).
#
# checkov:skip=CKV_DOCKER_2:No HEALTHCHECK: Kubernetes native gRPC probes (startup/readiness/liveness) check the standard gRPC health service
# checkov:skip=CKV_DOCKER_7:The base is the ARG PYTHON_IMAGE, pinned by its default python:3.11.7-slim-bookworm (checkov does not resolve ARGs)

# both stages: the same exact Python base (the venv links to its /usr/local/bin/python3.11). Any image with
# Python 3.11 at /usr/local/bin/python3.11 and the venv module works: `make image` builds this file with
# buildah on a Debian bookworm base made by debootstrap (tools/image.sh), as no registry is reachable there.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
# --- build: resolve the locked runtime dependencies into a virtualenv ----------------------------------
FROM ${PYTHON_IMAGE} AS build
# reproducible bytecode: with SOURCE_DATE_EPOCH set, compileall writes hash-checked .pyc files (no mtimes)
ARG SOURCE_DATE_EPOCH=0
# the venv lives at its final path (console-script shebangs are absolute); bytecode compiled once here.
# SSL_CERT_FILE/PIP_CERT: the system CA bundle (a builder behind a TLS-inspecting proxy mounts its own
# bundle there for the build; nothing of this stage reaches the final image)
ENV UV_PROJECT_ENVIRONMENT=/opt/isthmus \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# uv in a venv of its own (no system pip needed, never copied to the runtime stage)
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==0.13.9"
WORKDIR /src
# 1. the third-party dependencies, from the lock file and the workspace members' manifests only: this
# layer is rebuilt when a dependency changes, not when the code does
COPY pyproject.toml uv.lock ./
COPY protos/pyproject.toml ./protos/
COPY operators/pyproject.toml ./operators/
COPY services/core/pyproject.toml ./services/core/
COPY services/cli/pyproject.toml ./services/cli/
COPY services/ingestion/pyproject.toml ./services/ingestion/
COPY services/embedding/pyproject.toml ./services/embedding/
COPY services/retrieval/pyproject.toml ./services/retrieval/
COPY services/agent-orchestrator/pyproject.toml ./services/agent-orchestrator/
COPY services/guardrail/pyproject.toml ./services/guardrail/
COPY services/evaluation/pyproject.toml ./services/evaluation/
COPY services/console/pyproject.toml ./services/console/
# the benchmark harnesses are a workspace member but never shipped: only their manifest, so the workspace
# resolves, and --no-install-package leaves them out
COPY benchmarks/pyproject.toml ./benchmarks/pyproject.toml
# runtime dependencies only: --no-dev leaves out the dev group (test tools); the llama group is never a default
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --all-packages --no-install-workspace
# 2. the workspace packages as wheels (--no-editable), so the venv does not need /src
COPY protos ./protos
COPY services ./services
COPY operators ./operators
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --all-packages --no-editable --no-install-package isthmus-bench

# --- runtime: the venv on a clean base, non-root --------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
# useradd stamps /etc/shadow with the day of the build unless SOURCE_DATE_EPOCH names one
ARG SOURCE_DATE_EPOCH=0
LABEL org.opencontainers.image.title="isthmus" \
      org.opencontainers.image.description="Isthmus GenAI platform: every service, selected with --target" \
      org.opencontainers.image.version="${VERSION}"
RUN groupadd --system --gid 10001 isthmus \
 && useradd --system --uid 10001 --gid isthmus --home-dir /data --no-create-home --shell /usr/sbin/nologin isthmus \
 && mkdir -p /data \
 && chown isthmus:isthmus /data
# root-owned and read-only for the service user; only /data (a volume in Kubernetes) is writable
COPY --from=build /opt/isthmus /opt/isthmus
ENV PATH=/opt/isthmus/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/data \
    ISTHMUS_GRPC_HOST=0.0.0.0 \
    ISTHMUS_DATA_DIR=/data \
    ISTHMUS_LOG_FORMAT=json
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# gRPC (every service, health, reflection) and Prometheus metrics
EXPOSE 50051 9464 8088
ENTRYPOINT ["isthmus", "run"]
CMD ["--target", "all"]
