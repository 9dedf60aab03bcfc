#!/usr/bin/env bash
# Installs the npm clients the e2e tests drive into .test-clients/:
#   tests/e2e/openai/clients/package.json    -> .test-clients/           (the stock OpenAI SDK,
#                                               the Vercel AI SDK, a JSON-schema validator)
#   tests/e2e/dashboard/clients/package.json -> .test-clients/dashboard/ (puppeteer-core, which
#                                               drives Debian's chromium and downloads no browser)
# Set-up time only: the tests themselves never reach the network. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null 2>&1; then
  echo "install-test-clients: npm is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
fi

# install_clients SPEC TARGET: npm install of SPEC's dependencies into TARGET, unless done.
install_clients() {
  local spec=$1 target=$2
  if [ -f "$target/package.json" ] && cmp -s "$spec" "$target/package.json" && [ -d "$target/node_modules" ]; then
    return
  fi
  mkdir -p "$target"
  cp "$spec" "$target/package.json"
  echo "install-test-clients: npm install into $target" >&2
  # No browser download: the dashboard tests use the system's chromium.
  (cd "$target" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --no-package-lock --loglevel=error >&2)
}

install_clients tests/e2e/openai/clients/package.json .test-clients
install_clients tests/e2e/dashboard/clients/package.json .test-clients/dashboard
