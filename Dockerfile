# The spotdrain worker: `docker build -t spotdrain .` then
# `docker run --rm -e QUEUE_URL=... -e AWS_REGION=... spotdrain` (docs/deploy.md).
# Debian 13 (Python 3.13, libnfs 5) by default; Debian 12 (Python 3.11, libnfs 4) with
# `--build-arg BASE_IMAGE=debian:bookworm-slim`. Either libnfs has the ABI the worker binds.
ARG BASE_IMAGE=debian:trixie-slim

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
# The runtime dependencies, exactly as locked and checked against their hashes, in a layer
# of their own: a code change rebuilds only the layers below.
COPY requirements.lock ./
RUN /opt/spotdrain/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
# The operator's command (`spotdrain`, python -m worker.ops) reads the launcher's settings.
COPY launcher ./launcher
# The project itself (its C converter compiled here); the import proves the virtualenv
# complete and the base's libnfs of a known ABI (-P: the installed package, not ./worker).
# No version to pin: it is this tree.
# hadolint ignore=DL3013
RUN /opt/spotdrain/bin/pip install --no-deps . \
 && /opt/spotdrain/bin/python -P -c "import worker.__main__, worker.ops.cli, worker.csvconv._fastcsv; from worker.adapters import libnfs; libnfs.library()"

# ---- venv: the virtualenv without pip and setuptools, which the runtime needs neither of ----
FROM build AS venv
RUN /opt/spotdrain/bin/python -m pip uninstall -y -q pip setuptools

# ---- runtime: Python, the libnfs runtime library and the virtualenv ----
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="spotdrain" \
      org.opencontainers.image.description="Event-driven batch worker for AWS ECS: drains an SQS queue, survives Spot, loses nothing." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The runtime: Python, the libnfs library (sidecars over NFS, through ctypes; its package is
# named after its soname: libnfs13 in Debian 12, libnfs14 in Debian 13) and CA certificates;
# versions unpinned as above.
# hadolint ignore=DL3008
RUN . /etc/os-release \
 && case "$VERSION_CODENAME" in bookworm) libnfs=libnfs13 ;; *) libnfs=libnfs14 ;; esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates "$libnfs" python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin spotdrain
COPY --from=venv /opt/spotdrain /opt/spotdrain
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
