#!/usr/bin/env bash
# Installs rbee's build and test dependencies from Debian 12 packages.
# Idempotent: does nothing when everything is present; otherwise runs
# `apt-get update` once and installs only what is missing. Needs root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config clang clang-format libclang-rt-14-dev
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libsqlite3-dev sqlite3 libcurl4-openssl-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  openssh-client openssh-server iproute2 procps python3 curl jq tmux bsdextrautils time
  busybox-static  # the portable install test's node without any libc
  chromium  # the dashboard's browser tests (driven by puppeteer-core)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node.js and npm (for the OpenAI SDK client test) may come from another source than
# Debian; only install Debian's when no npm is on the PATH at all.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run as root (or: sudo $0)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
