#!/usr/bin/env bash
# Measures `kt policy lint` on a generated file of 5,000 policies (budget: < 1 s).
# Usage: bench/lint/run.sh [path/to/kt]   (default: build/cli/kt)
set -euo pipefail
cd "$(dirname "$0")/../.."
KT=${1:-build/cli/kt}
OUT=$(mktemp -d)
python3 bench/lint/gen_policies.py 5000 > "$OUT/5000.ktp"
echo "file: $(wc -c < "$OUT/5000.ktp") bytes, $(grep -c '^policy ' "$OUT/5000.ktp") policies"
"$KT" policy lint "$OUT/5000.ktp" > /dev/null
if command -v hyperfine > /dev/null; then
  hyperfine --warmup 1 --runs 10 "$KT policy lint $OUT/5000.ktp"
else
  for i in 1 2 3 4 5; do
    /usr/bin/time -f "run $i: %e s, %M KB max RSS" "$KT" policy lint "$OUT/5000.ktp" > /dev/null 2>/tmp/kt-lint-time || true
    tail -1 /tmp/kt-lint-time
  done
fi
rm -rf "$OUT"
