# syntax=docker/dockerfile:1
# One image for the gateway and every service; the command picks the process
# (python -m realtime_gateway | chat_service | bids_service | presence_service).
#
# The base is pinned by exact version, not by digest: a digest cannot be known without
# reaching the registry, which the machines that wrote this file cannot. Pin a digest
# (python:3.11.11-slim-bookworm@sha256:...) in your own registry mirror if you need one.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first, from the hashed lock (scripts/lock), so that a code change leaves this
# layer cached and two builds install the same versions. Binary wheels only: every dependency
# has manylinux wheels for CPython 3.11, so nothing is compiled and no compiler is needed.
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock \
    && pip install --require-hashes --only-binary=:all: -r requirements-build.lock
COPY . .
# The project itself, built by the pinned setuptools above (no build isolation, which would
# fetch an unpinned one); then the venv's own pip and setuptools go:
# the runtime installs nothing.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/realtime-*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
# A fixed UID/GID, so that compose and Kubernetes can name it (user: "10001:10001",
# runAsUser, fsGroup) and secret files can be made readable to it; /var/lib/realtime is the
# one directory it may write (compose's redis-acl writes the ACL file there).
RUN groupadd --system --gid 10001 realtime \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin realtime \
    && install -d -o 10001 -g 10001 -m 0755 /var/lib/realtime \
    && python -m pip uninstall --yes --root-user-action=ignore pip setuptools wheel
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RT_HOST=0.0.0.0
# An empty directory of root's, made before USER so that it stays so: `python -m` puts the
# working directory first on sys.path.
WORKDIR /app
USER 10001:10001
# gateway 8000; chat 8101, bids 8102, presence 8103 (/livez, /readyz, /metrics on each).
EXPOSE 8000 8101 8102 8103
# Liveness on the process's own port: RT_PORT, else the gateway's 8000. A service started
# without RT_PORT listens on its default port, so set RT_PORT (compose.yml does) or override
# this check; behind TLS (RT_TLS_CERT_FILE) use the orchestrator's probe instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('RT_PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "realtime_gateway"]
