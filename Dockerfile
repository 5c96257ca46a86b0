# syntax=docker/dockerfile:1.7
# Lab Orchestrator image: `docker build -t ghcr.io/OWNER/laborchestrator:VERSION .`
# Two stages, so npm does not end up in what runs in the cluster.

ARG PYTHON_VERSION=3.11
ARG NODE_VERSION=20

# --- Browser libraries (noVNC, xterm.js), pinned by package-lock.json; same copy as `make assets` ---
FROM node:${NODE_VERSION}-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
RUN mkdir -p static/novnc static/xterm \
 && cp -r node_modules/@novnc/novnc/core node_modules/@novnc/novnc/vendor node_modules/@novnc/novnc/LICENSE.txt static/novnc/ \
 && cp node_modules/@xterm/xterm/lib/xterm.mjs node_modules/@xterm/xterm/css/xterm.css node_modules/@xterm/xterm/LICENSE static/xterm/ \
 && cp node_modules/@xterm/addon-fit/lib/addon-fit.mjs static/xterm/

# --- Runtime ---
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=laborchestrator.settings \
    LABORCHESTRATOR_PRODUCTION=1 \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/data/media \
    LABORCHESTRATOR_VAR_DIR=/tmp/laborchestrator
# skopeo: the VM image form checks references against their registry (labs/registry.py).
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends skopeo \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric UID/GID, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 laborchestrator \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin laborchestrator
# Every package from the hashed lock file (requirements.lock: production's, without the test tools);
# all of them ship wheels, so no compiler is needed and nothing unpinned can slip in.
RUN --mount=type=bind,source=requirements.lock,target=/tmp/requirements.lock \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.lock
WORKDIR /app
# Code and static files stay owned by root: the app user can read them, not change them.
COPY . .
COPY --from=assets /build/static/novnc ./static/novnc
COPY --from=assets /build/static/xterm ./static/xterm
# Hashed, compressed static files (WhiteNoise's manifest storage, as LABORCHESTRATOR_PRODUCTION=1 selects);
# no secret or database is needed for this step.
RUN python manage.py collectstatic --no-input --verbosity 0 \
 && mkdir -p /data/media \
 && chown 10001:10001 /data/media
USER 10001:10001
EXPOSE 8000
# Migrations are not run here: the migrate Job does them once per release (deploy/k8s/migrate-job.yaml).
# uvicorn on uvloop (laborchestrator/serve.py); client address and scheme from the ingress's headers.
CMD ["python", "-m", "laborchestrator.serve", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
