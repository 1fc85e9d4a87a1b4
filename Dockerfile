# One image for every herald role: `herald run <role>`, `herald migrate`.
# Production image only: no embedded PostgreSQL or Kafka, no test tools.
#   docker build -t herald:0.1.0 .
#   docker run --rm herald:0.1.0 settings
# The dev overlay's provider simulator needs the `simulator` extra, in an image of its own:
#   docker build --build-arg HERALD_EXTRAS=simulator -t herald:dev .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Empty for production: base dependencies only.
ARG HERALD_EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/herald
# Dependencies first, so a source change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p src/herald && touch src/herald/__init__.py \
    && /opt/herald/bin/pip install ".${HERALD_EXTRAS:+[$HERALD_EXTRAS]}" \
    && /opt/herald/bin/pip uninstall -y herald
COPY src ./src
RUN /opt/herald/bin/pip install --no-deps . \
    && /opt/herald/bin/python -m compileall -q /opt/herald

FROM ${PYTHON_IMAGE}
# Bytecode is compiled at build time; the root filesystem is read-only in Kubernetes.
ENV PATH=/opt/herald/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HERALD_BIND_HOST=0.0.0.0
RUN groupadd --system --gid 10001 herald \
    && useradd --system --uid 10001 --gid herald --no-create-home --shell /usr/sbin/nologin herald
COPY --from=build /opt/herald /opt/herald
USER 10001:10001
WORKDIR /tmp
# 8081 callback ingress, 8082 provider simulator, 9100 /metrics and health probes.
EXPOSE 8081 8082 9100
ENTRYPOINT ["herald"]
CMD ["--help"]
