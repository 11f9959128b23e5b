# The spotdrain worker: `docker build -t spotdrain .` then
# `docker run --rm -e QUEUE_URL=... -e AWS_REGION=... spotdrain` (docs/deploy.md).
# Python 3.11 comes from Debian 12: the libnfs binding imports on 3.11, not on 3.12+.
ARG BASE_IMAGE=debian:bookworm-slim

# ---- build: compilers and headers live only here ----
FROM ${BASE_IMAGE} AS build
# Versions are not pinned: Debian stable's point and security releases replace the exact
# versions, so a pin would break the build rather than make it reproducible.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libnfs-dev python3-dev python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/spotdrain
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies get their own layer (an empty package stands in for the code), so a code
# change rebuilds only the last layer. Not pinned here: pyproject.toml bounds them.
# hadolint ignore=DL3013
RUN mkdir worker && touch worker/__init__.py \
 && /opt/spotdrain/bin/pip install ".[nfs]"
COPY worker ./worker
# The operator's command (`spotdrain`, python -m worker.ops) reads the launcher's settings.
COPY launcher ./launcher
# The project itself (its dependencies are in place), then pip and setuptools go: the
# runtime needs neither. The import proves the virtualenv complete.
# hadolint ignore=DL3013
RUN /opt/spotdrain/bin/pip install --no-deps --force-reinstall . \
 && /opt/spotdrain/bin/python -c "import worker.__main__, worker.ops.cli, libnfs" \
 && /opt/spotdrain/bin/python -m pip uninstall -y -q pip setuptools

# ---- runtime: Python, the libnfs runtime library and the virtualenv ----
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="spotdrain" \
      org.opencontainers.image.description="Event-driven batch worker for AWS ECS: drains an SQS queue, survives Spot, loses nothing." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The runtime: Python, the libnfs library (sidecars over NFS, through ctypes) and CA
# certificates; versions unpinned as above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libnfs13 python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin spotdrain
COPY --from=build /opt/spotdrain /opt/spotdrain
ENV PATH=/opt/spotdrain/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Not root. NFS consequence: libnfs then binds a high source port, so an export must
# accept non-privileged ports (VAST: insecure ports); where a server insists, run as
# root with `docker run --user root` or `"user": "0"` in the task definition.
USER 10001:10001
# ECS stops a task with SIGTERM to PID 1: the exec form makes PID 1 Python itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "worker"]
