#!/usr/bin/env bash
# Prove that dispatch works from a bare clone with nothing beside it: git clone this checkout's
# HEAD (committed work only) into a fresh empty temporary folder (mktemp -d; the clone is the
# only thing in it), then, there: make test; make run, and GET <the URL it prints>healthz must
# answer 200; make stop, which must leave neither its services nor its local PostgreSQL and
# Redis running; then the folder is removed (also on failure or Ctrl-C).
#
# Usage: scripts/bare_clone_check.sh   (make bare-clone-check)
# Environment: PYTEST_ARGS (passed to the clone's make test), KEEP=1 (keep the folder to look
# at; its servers are stopped all the same). Everything that would point the clone at servers,
# ports or files of this machine is unset: DATABASE_URL, REDIS_URL, PG_PORT, REDIS_PORT,
# TWILIO_* (so Twilio is the Prism mock and its spec the clone's own), PUBLIC_BASE_URL,
# PYTHONPATH, VIRTUAL_ENV. The web port is the first free one from 8000.
# The clone's make test and make run output is also written to test-artifacts/ here.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

unset DATABASE_URL REDIS_URL PG_PORT REDIS_PORT TWILIO_MOCK_PORT TWILIO_OPENAPI_SPEC \
    TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN TWILIO_API_BASE_URL TWILIO_MESSAGING_FROM \
    PUBLIC_BASE_URL PYTHONPATH VIRTUAL_ENV MAKEFLAGS MFLAGS MAKELEVEL

LOG_FILE="$ROOT/test-artifacts/bare-clone-check.log"      # the clone's make test output
RUN_LOG="$ROOT/test-artifacts/bare-clone-check-run.log"   # its make run output
SHA="$(git -C "$ROOT" rev-parse HEAD)"
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
    warn "uncommitted changes are not part of the check: it clones HEAD ($SHA)"
fi

TMP="$(cd "$(mktemp -d)" && pwd -P)"   # physical path, as provision.sh names it
CLONE="$TMP/dispatch"
STARTED=0     # 1 once the clone may have started servers
PHASES=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$STARTED" = 1 ] && [ -d "$CLONE" ]; then
        (cd "$CLONE" && make stop) >/dev/null 2>&1 || warn "make stop in the clone failed"
    fi
    # provision.sh puts the cluster outside the checkout when 'postgres' cannot enter it
    # (not expected: see the chmod below), in a folder named after the checkout's path.
    rm -rf "/var/lib/dispatch-local/$(printf '%s' "$CLONE" | sha1sum | cut -c1-12)" 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run "$@" in the clone as phase $1, timing it; its exit status is the command's.
phase() {
    local name="$1" start=$SECONDS rc=0
    shift
    log "bare clone: $name"
    (cd "$CLONE" && "$@") || rc=$?
    PHASES+=("$name: $((SECONDS - start)) s$([ "$rc" = 0 ] || echo " (exit $rc)")")
    return "$rc"
}

# 'postgres' must enter the folder for the cluster to live inside the clone (mktemp -d is 0700).
chmod 0755 "$TMP"
start=$SECONDS
git clone --quiet --no-checkout "$ROOT" "$CLONE"
git -C "$CLONE" checkout --quiet --detach "$SHA"
PHASES+=("git clone: $((SECONDS - start)) s")
[ "$(ls -A "$TMP")" = dispatch ] || die "$TMP holds more than the clone"
log "cloned $SHA into $CLONE (nothing beside it)"

STARTED=1
mkdir -p "$(dirname "$LOG_FILE")"
# A failing suite does not stop the check: make run is still tried, and the end says FAILED.
TEST_RC=0
phase "make test" bash -o pipefail -c 'make test PYTEST_ARGS="$1" 2>&1 | tee "$2"' \
    _ "${PYTEST_ARGS:-}" "$LOG_FILE" || TEST_RC=$?
SUMMARY="$(grep -E '[0-9]+ (passed|failed)' "$LOG_FILE" | tail -n 1 | tr -d '=' \
    | sed 's/^ *//; s/ *$//' || true)"

PORT="$(pick_port 8000 0 web)"
phase "make run" bash -o pipefail -c 'make run PORT="$1" 2>&1 | tee "$2"' _ "$PORT" "$RUN_LOG"
URL="$(sed -n 's/^dispatch is running at \(http[^ ]*\)$/\1/p' "$RUN_LOG" | tail -n 1)"
[ -n "$URL" ] || die "make run printed no 'dispatch is running at URL' line"
log "GET ${URL}healthz"
curl -fsS --max-time 10 "${URL}healthz"
echo

phase "make stop" make stop
running="$(cd "$CLONE" && bash scripts/services.sh status && bash scripts/provision.sh status)"
echo "$running"
if grep -q ': *running' <<<"$running"; then
    die "make stop left something running in the clone"
fi
STARTED=0

echo
if [ "$TEST_RC" = 0 ]; then
    echo "bare-clone-check PASSED at $SHA in $SECONDS s: ${SUMMARY:-no pytest summary line}"
else
    echo "bare-clone-check FAILED at $SHA in $SECONDS s: make test exited $TEST_RC" \
        "(${SUMMARY:-no pytest summary line}; see ${LOG_FILE#"$ROOT"/}); make run served /healthz"
fi
printf '  %s\n' "${PHASES[@]}"
exit "$TEST_RC"
