#!/usr/bin/env bash
# Install what spotdrain needs on a fresh Debian 12 machine: system packages (only when
# missing) and a virtualenv in .venv with the project and its test tools.
#   scripts/bootstrap.sh          runtime + NFS (libnfs, nfs-ganesha, rpcbind)
#   scripts/bootstrap.sh test     also the container tools (buildah, podman, debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libnfs-dev nfs-ganesha nfs-ganesha-vfs rpcbind)
if [ "${1:-}" = "test" ]; then
  packages+=(buildah podman debootstrap)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.spotdrain-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import worker, launcher, libnfs, moto, aiobotocore"
  touch "$stamp"
fi
# checkov (tests/deploy/test_checkov.py) in a virtualenv of its own: it pins its own boto3,
# botocore and a long list of others, which must not decide the project's versions.
if [ "${1:-}" = "test" ]; then
  checkov_version=3.3.30
  if [ ! -x .venv-checkov/bin/checkov ] || ! .venv-checkov/bin/checkov --version 2>/dev/null | grep -qx "$checkov_version"; then
    "$python" -m venv .venv-checkov
    .venv-checkov/bin/python -m pip install -q "checkov==$checkov_version" 2>&1 | grep -v "^WARNING: Location" || true
  fi
fi
