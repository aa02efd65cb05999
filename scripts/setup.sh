#!/usr/bin/env bash
# Install everything the lab and the tests need on a Debian 12+ host, as root:
# the Debian packages of the real components, then a virtualenv in .venv with the
# project and its test tools. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  runc skopeo busybox-static fuse3 iproute2 util-linux procps
  docker-registry python3 python3-venv python3-dev ca-certificates
  nftables wireguard-tools wireguard-go
)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: $python is older than 3.11; set PYTHON to a newer interpreter" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $python" >&2
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "setup: ready ($(.venv/bin/python --version), runc $(runc --version | head -1 | awk '{print $3}'))" >&2
