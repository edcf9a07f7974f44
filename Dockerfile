# One image for every service: `isthmus run --target all|<service>`.
# Why one image: one codebase and lock file, the bundled models (in the wheels) shared by all targets,
# one build, scan and signature per release; the chart picks the target per Deployment.
# checkov:skip=CKV_DOCKER_2: Kubernetes gRPC probes (readiness/liveness/startup) check health, not Docker HEALTHCHECK

FROM python:3.11.7-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY protos ./protos
COPY services ./services
COPY operators ./operators
# runtime dependencies only (the dev group holds test tools such as llama-cpp)
RUN uv sync --frozen --no-dev --all-packages --no-editable

FROM python:3.11.7-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 isthmus \
 && useradd --system --uid 10001 --gid isthmus --home-dir /data --shell /usr/sbin/nologin isthmus \
 && mkdir -p /data && chown isthmus:isthmus /data
COPY --from=build --chown=isthmus:isthmus /src/.venv /opt/isthmus
ENV PATH=/opt/isthmus/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ISTHMUS_GRPC_HOST=0.0.0.0 \
    ISTHMUS_DATA_DIR=/data \
    ISTHMUS_LOG_FORMAT=json
USER 10001:10001
WORKDIR /data
EXPOSE 50051 9464
ENTRYPOINT ["isthmus", "run"]
CMD ["--target", "all"]
