#!/usr/bin/env bash
# Installs the npm clients the OpenAI e2e tests drive (tests/e2e/openai/clients/package.json:
# the stock OpenAI SDK, the Vercel AI SDK, a JSON-schema validator) into .test-clients/.
# Set-up time only: the tests themselves never reach the network. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
spec=tests/e2e/openai/clients/package.json
target=.test-clients
if ! command -v npm >/dev/null 2>&1; then
  echo "install-test-clients: npm is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if [ -f "$target/package.json" ] && cmp -s "$spec" "$target/package.json" && [ -d "$target/node_modules" ]; then
  exit 0
fi
mkdir -p "$target"
cp "$spec" "$target/package.json"
echo "install-test-clients: npm install into $target" >&2
(cd "$target" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >&2)
