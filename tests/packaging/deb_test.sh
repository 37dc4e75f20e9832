#!/usr/bin/env bash
# packaging.deb: cpack builds the Debian package from the configured build
# tree (into a temp dir; the tree's own build/kt_*.deb is left alone), and
# the package is what docs/operations.md says it is:
#   - control: Package kt, amd64, dpkg-shlibdeps' Depends (libc6, libllvm19)
#     plus adduser, the conffiles, executable maintainer scripts;
#   - contents: /usr/bin/kt (stripped, no RUNPATH), the unit, /etc/kt (env
#     file 0600), the stdlib, the examples, and nothing else;
#   - the packaged kt runs: --version matches the package version, lints and
#     tests the packaged starter policy against the packaged stdlib, and the
#     unit's own ExecStart (with the env file's KT_ARGS) serves a request,
#     reloads on SIGHUP (the unit's ExecReload) and drains on SIGTERM;
#   - systemd-analyze verify accepts the unit and the replica template (skipped without systemd-analyze).
#   tests/packaging/deb_test.sh BUILD_DIR
set -euo pipefail
build=$1
tmp=$(mktemp -d)
gw_pid=""
cleanup() {
  if [[ -n "$gw_pid" ]]; then kill -KILL "$gw_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

[[ -f "$build/CPackConfig.cmake" ]] || fail "$build/CPackConfig.cmake missing (configure with KT_PACKAGE=ON)"

# 1. cpack, into the temp dir.
if ! cpack --config "$build/CPackConfig.cmake" -B "$tmp/out" -D CPACK_OUTPUT_FILE_PREFIX="$tmp/out" \
    >"$tmp/cpack.log" 2>&1; then
  cat "$tmp/cpack.log"; fail "cpack failed"
fi
shopt -s nullglob
debs=("$tmp"/out/kt_*_amd64.deb)
(( ${#debs[@]} == 1 )) || { cat "$tmp/cpack.log"; fail "expected one kt_<version>_amd64.deb, got: ${debs[*]-none}"; }
deb=${debs[0]}
echo "package: $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# 2. Control fields and the control archive.
field() { dpkg-deb --field "$deb" "$1"; }
[[ "$(field Package)" == kt ]] || fail "Package: $(field Package)"
[[ "$(field Architecture)" == amd64 ]] || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
echo "Depends: $depends"
dep_names=$(tr ',' '\n' <<<"$depends" | sed -E 's/^ *//; s/ .*//')
for d in adduser libc6 libllvm19 libstdc++6 libssl3; do
  grep -qxF "$d" <<<"$dep_names" || fail "Depends lacks $d (dpkg-shlibdeps did not run?): $depends"
done
mkdir "$tmp/control"
dpkg-deb --control "$deb" "$tmp/control"
printf '/etc/kt/kt-gateway.env\n/etc/kt/policies/quickstart.ktp\n' >"$tmp/conffiles.want"
diff -u "$tmp/conffiles.want" <(sort "$tmp/control/conffiles") || fail "conffiles differ"
for s in postinst prerm postrm; do
  [[ -x "$tmp/control/$s" ]] || fail "maintainer script $s missing or not executable"
  sh -n "$tmp/control/$s" || fail "$s: syntax error"
done
grep -q 'adduser --system' "$tmp/control/postinst" || fail "postinst does not create the kt user"
grep -q '/var/log/kt' "$tmp/control/postinst" || fail "postinst does not create /var/log/kt"
if grep -Eq 'systemctl +(start|enable|restart)' "$tmp/control/postinst"; then
  fail "postinst starts or enables the service"
fi

# 3. Contents: everything expected, nothing outside the package's places.
dpkg-deb --contents "$deb" >"$tmp/contents"
mode_of() { awk -v p="./$1" '$6 == p { print $1 }' "$tmp/contents"; }
for f in usr/bin/kt lib/systemd/system/kt-gateway.service lib/systemd/system/kt-gateway@.service \
         etc/kt/kt-gateway.env \
         etc/kt/policies/quickstart.ktp usr/share/kt/stdlib/std/secrets.ktp \
         usr/share/kt/stdlib/std/pii.ktp usr/share/kt/stdlib/std/injection.ktp \
         usr/share/kt/examples/policies/quickstart.ktp usr/share/doc/kt/operations.md; do
  [[ -n "$(mode_of "$f")" ]] || fail "package lacks /$f"
done
[[ "$(mode_of usr/bin/kt)" == -rwxr-xr-x ]] || fail "/usr/bin/kt mode $(mode_of usr/bin/kt)"
[[ "$(mode_of etc/kt/kt-gateway.env)" == -rw------- ]] || fail "kt-gateway.env mode $(mode_of etc/kt/kt-gateway.env)"
stray=$(awk '{print $6}' "$tmp/contents" |
  grep -Ev '^\./(etc/|etc/kt/.*|lib/|lib/systemd/|lib/systemd/system/|lib/systemd/system/kt-gateway@?\.service|usr/|usr/bin/|usr/bin/kt|usr/share/|usr/share/kt/.*|usr/share/doc/|usr/share/doc/kt/.*)$' || true)
[[ -z "$stray" ]] || fail "unexpected files in the package: $stray"

# 4. The packaged binary.
root="$tmp/root"
dpkg-deb -x "$deb" "$root"
kt="$root/usr/bin/kt"
readelf -S "$kt" | grep -q '\.debug_info' && fail "/usr/bin/kt is not stripped"
readelf -d "$kt" | grep -Eq 'RPATH|RUNPATH' && fail "/usr/bin/kt keeps the build tree's RUNPATH"
if ldd "$kt" | grep -q 'not found'; then ldd "$kt"; fail "unresolved libraries"; fi
version=$("$kt" --version)
[[ "$version" == "kt $(field Version)" ]] || fail "kt --version says '$version', the package $(field Version)"
stdlib="$root/usr/share/kt/stdlib"
"$kt" policy lint --strict --stdlib "$stdlib" --cache-dir "" "$root/etc/kt/policies" ||
  fail "the packaged starter policy does not lint against the packaged stdlib"
"$kt" policy test --stdlib "$stdlib" --cache-dir "" "$stdlib" "$root/usr/share/kt/examples/policies" \
  >"$tmp/policy-test.log" 2>&1 || { cat "$tmp/policy-test.log"; fail "policy test on the packaged policies"; }

# 5. The unit's ExecStart with the env file's KT_ARGS, relocated into the
# extracted root: it serves, reloads on SIGHUP, drains on SIGTERM.
unit="$root/lib/systemd/system/kt-gateway.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ "$exec_start" == "/usr/bin/kt gateway run --policy /etc/kt/policies \$KT_ARGS" ]] ||
  fail "unexpected ExecStart: $exec_start"
grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "ExecReload is not SIGHUP"
grep -qx 'EnvironmentFile=/etc/kt/kt-gateway.env' "$unit" || fail "EnvironmentFile"
kt_args=$(env -i sh -c '. "$1"; printf %s "$KT_ARGS"' sh "$root/etc/kt/kt-gateway.env")
[[ -n "$kt_args" ]] || fail "kt-gateway.env sets no KT_ARGS"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/var/lib/kt" "$tmp/var/log/kt"
cmd="${exec_start/\$KT_ARGS/$kt_args}"
cmd=${cmd//\/usr\/bin\/kt/$kt}
cmd=${cmd//\/etc\/kt/$root/etc/kt}
cmd=${cmd//\/var\/lib\/kt/$tmp/var/lib/kt}
cmd=${cmd//\/var\/log\/kt/$tmp/var/log/kt}
cmd=$(sed -E "s/--listen [^ ]+/--listen 127.0.0.1:$port/" <<<"$cmd")
echo "gateway: $cmd"
# shellcheck disable=SC2086  # systemd splits $KT_ARGS on whitespace too
env -i PATH=/usr/bin:/bin HOME="$tmp/var/lib/kt" $cmd >"$tmp/gw.log" 2>&1 &
gw_pid=$!
ready=0
for _ in $(seq 1 200); do
  if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$gw_pid" 2>/dev/null || break
  sleep 0.1
done
(( ready )) || { cat "$tmp/gw.log"; fail "the packaged gateway did not become ready"; }
reply=$(curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}')
grep -q 'This is a mock completion' <<<"$reply" || { cat "$tmp/gw.log"; fail "chat completion: $reply"; }
kill -HUP "$gw_pid"
for _ in $(seq 1 100); do grep -q 'SIGHUP: reloaded policies' "$tmp/gw.log" && break; sleep 0.1; done
grep -q 'SIGHUP: reloaded policies' "$tmp/gw.log" || { cat "$tmp/gw.log"; fail "no reload on SIGHUP"; }
kill -TERM "$gw_pid"
rc=0; wait "$gw_pid" || rc=$?
gw_pid=""
(( rc == 0 )) || { cat "$tmp/gw.log"; fail "gateway exited $rc on SIGTERM"; }
[[ -s "$tmp/var/log/kt/audit.jsonl" ]] || fail "no audit log at the env file's --audit-log"
"$kt" audit verify "$tmp/var/log/kt/audit.jsonl" || fail "audit chain of the packaged gateway"

# 6. systemd-analyze verify: the packaged unit, its ExecStart pointed at the
# extracted binary (the host has no /usr/bin/kt). Warnings fail too.
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir "$tmp/unit"
  sed "s#^ExecStart=/usr/bin/kt #ExecStart=$kt #" "$unit" >"$tmp/unit/kt-gateway.service"
  # The replica template, as an instance (verify needs one).
  sed "s#^ExecStart=/usr/bin/kt #ExecStart=$kt #" "$root/lib/systemd/system/kt-gateway@.service" \
    >"$tmp/unit/kt-gateway@41003.service"
  grep -qx 'EnvironmentFile=/etc/kt/kt-gateway-%i.env' "$tmp/unit/kt-gateway@41003.service" ||
    fail "kt-gateway@.service: EnvironmentFile"
  for u in kt-gateway.service kt-gateway@41003.service; do
    out=$(systemd-analyze verify "$tmp/unit/$u" 2>&1) || { echo "$out"; fail "systemd-analyze verify $u"; }
    if grep -q 'kt-gateway' <<<"$out"; then echo "$out"; fail "systemd-analyze verify warns on $u"; fi
  done
  echo "systemd-analyze verify: ok"
else
  echo "systemd-analyze not found: unit verification skipped"
fi
echo "packaging.deb: ok"
