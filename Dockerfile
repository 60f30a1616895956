# syntax=docker/dockerfile:1
# One image for the gateway and every service; compose.yml picks the module each container runs.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY . .
# Wheels for the project and all its dependencies, so the final stage needs no build tools.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --root-user-action=ignore --no-index --find-links /wheels realtime
RUN useradd --system --no-create-home --shell /usr/sbin/nologin realtime
USER realtime
WORKDIR /app
EXPOSE 8000
CMD ["python", "-m", "realtime_gateway"]
