#!/usr/bin/env bash
# Runs the gateway integration tests: installs the pinned `openai` and
# `@anthropic-ai/sdk` npm packages (package-lock.json) when either is
# missing, then drives the real `kt gateway run` binary with them.
#   tests/gateway/run.sh path/to/kt [TEST.mjs ...]
# (default: gateway_test.mjs and operations_test.mjs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kt=$(realpath "$1")
shift
tests=("$@")
if ((${#tests[@]} == 0)); then tests=(gateway_test.mjs operations_test.mjs); fi
command -v node >/dev/null || { echo "run.sh: node is missing (scripts/install-deps installs it)" >&2; exit 1; }
if [[ ! -f "$here/node_modules/openai/package.json" || ! -f "$here/node_modules/@anthropic-ai/sdk/package.json" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
cd "$here/../.."
# Compiled policy programs go to a cache of this run's own.
KT_CACHE_DIR=$(mktemp -d)
export KT_CACHE_DIR
trap 'rm -rf "$KT_CACHE_DIR"' EXIT
KT_BIN="$kt" KT_SOURCE_DIR="$PWD" node --test --test-concurrency=1 --test-reporter=spec \
  "${tests[@]/#/$here/}"
