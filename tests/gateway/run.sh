#!/usr/bin/env bash
# Runs the gateway integration tests: installs the pinned `openai` npm
# package (package-lock.json) when it is missing, then drives the real
# `kt gateway run` binary with it.
#   tests/gateway/run.sh path/to/kt
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kt=$(realpath "$1")
if [[ ! -f "$here/node_modules/openai/package.json" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
cd "$here/../.."
# Compiled policy programs go to a cache of this run's own.
KT_CACHE_DIR=$(mktemp -d)
export KT_CACHE_DIR
trap 'rm -rf "$KT_CACHE_DIR"' EXIT
KT_BIN="$kt" KT_SOURCE_DIR="$PWD" node --test --test-concurrency=1 --test-reporter=spec \
  "$here/gateway_test.mjs" "$here/operations_test.mjs"
