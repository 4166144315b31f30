#!/usr/bin/env bash
# Run dispatch's own processes in the background: web (gunicorn), RQ workers (timers, messages,
# batches), sweeper, demo-fleet (plays the demo workers; DEMO_FLEET=0 leaves it out), and,
# unless real Twilio credentials are given, twilio-mock: Stoplight Prism serving Twilio's OpenAPI
# spec, which the app's Twilio client is pointed at, so no SMS or call leaves this machine, and
# twilio-verify-mock: Prism serving Twilio's Verify spec (phone codes; any code of 4 to 10
# digits is approved by its example answer); and,
# unless GEOCODER_URL is set, gazetteer: a local Nominatim-compatible address search over the
# demo gazetteer geo/data/sf_gazetteer.json (python -m geo.gazetteer), so no address leaves it.
# Pid files in .local/run/NAME.pid, logs in .local/log/NAME.log. Each process leads its own
# session (setsid), so stopping it also stops its children (gunicorn workers, RQ work horses).
#
# Usage: scripts/services.sh run|stop|status
#   run     (re)start: stop our running processes, start twilio-mock (when TWILIO_ACCOUNT_SID is
#           not set), migrate, seed demo data, start web + worker + sweeper, wait until
#           GET /healthz answers 200, print the URL. Needs .local/env.sh (scripts/provision.sh
#           writes it) and, for the mock, node_modules (npm ci: Prism, and Twilio's spec from
#           @twilio-alpha/mcp).
#   stop    stop web, worker, sweeper, demo-fleet and twilio-mock (not PostgreSQL/Redis: see
#           scripts/provision.sh stop)
#   status  show which of them run
#
# Environment: PORT (web port, default 8000), HEALTH_TIMEOUT (seconds, default 60),
# DEMO_FLEET (default 1; 0: no demo-fleet), DEMO_FLEET_SPEED, DEMO_FLEET_TICK_SECONDS.
# Twilio: with TWILIO_ACCOUNT_SID set, the TWILIO_* variables are passed through untouched and
# messages are REALLY sent. Without it, web/worker/sweeper get TWILIO_ACCOUNT_SID=AC000...0,
# TWILIO_AUTH_TOKEN=dev-token, TWILIO_API_BASE_URL=http://127.0.0.1:<mock port>,
# TWILIO_VERIFY_BASE_URL=http://127.0.0.1:<verify mock port> and TWILIO_MESSAGING_FROM (default
# +15005550006). TWILIO_MOCK_PORT (default 4010, else the next free one),
# TWILIO_VERIFY_MOCK_PORT (default 4020, likewise), TWILIO_OPENAPI_SPEC and
# TWILIO_VERIFY_OPENAPI_SPEC (spec files), MOCK_TIMEOUT (seconds, default 60). The real Twilio
# also needs TWILIO_VERIFY_SERVICE_SID (a Verify service of the account).
# PUBLIC_BASE_URL (the app's public URL, for Twilio callbacks) defaults to http://127.0.0.1:$PORT.
# Geocoder: with GEOCODER_URL set it is passed through; without it the gazetteer is started on
# GAZETTEER_PORT (default 8070, else the next free one) and GEOCODER_URL points at it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_DIR="$LOCAL/run"
LOG_DIR="$LOCAL/log"
PORT="${PORT:-8000}"
# start order; stop runs in reverse. One RQ worker per queue group (dispatch/infra/queues.py):
# offer timers never wait behind a batch or a slow SMS.
SERVICES=(worker-timers worker-messages worker-batches sweeper demo-fleet web)
FLEET=demo-fleet                      # in SERVICES, started unless DEMO_FLEET=0
MOCK=twilio-mock                      # started before SERVICES (only without real credentials)
VERIFY_MOCK=twilio-verify-mock        # likewise, for Twilio Verify (phone codes)
GAZETTEER=gazetteer                   # started before SERVICES (only without GEOCODER_URL)
ALL_SERVICES=("$MOCK" "$VERIFY_MOCK" "$GAZETTEER" "${SERVICES[@]}")
PRISM="$ROOT/node_modules/.bin/prism"
MOCK_ACCOUNT_SID="AC00000000000000000000000000000000"
# Twilio's spec as @twilio-alpha/mcp ships it: the same relative path as SPEC_IN_REPO in
# notifications/twilio_client.py (spec_path(); tests/test_bare_clone.py keeps them in step).
TWILIO_SPEC="${TWILIO_OPENAPI_SPEC:-$ROOT/node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_api_v2010.json}"
# Its Verify spec, from the same package (VERIFY_SPEC_IN_REPO).
VERIFY_SPEC="${TWILIO_VERIFY_OPENAPI_SPEC:-$ROOT/node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_verify_v2.json}"

# The command of each service; exec'd in the service's own session by `__exec`.
exec_service() {
    cd "$ROOT"
    export PYTHONUNBUFFERED=1
    case "$1" in
        web)
            exec "$VENV/bin/gunicorn" --bind "127.0.0.1:$PORT" --worker-class gevent \
                --worker-connections 10000 --workers 1 --access-logfile - 'dispatch.entrypoints.wsgi:app' ;;
        worker-*)
            exec "$VENV/bin/python" -m dispatch.entrypoints.rq_worker "${1#worker-}" ;;
        sweeper)
            exec "$VENV/bin/flask" --app dispatch sweeper ;;
        "$FLEET")
            # It refuses to run without DEMO_FLEET=1: demo mode is asked for here, explicitly.
            DEMO_FLEET=1 exec "$VENV/bin/python" -m dispatch.entrypoints.demo_fleet ;;
        "$MOCK")
            # Prism itself, not npx: the pid we keep is the node process. Static mode (no -d:
            # dynamic mode breaks list(); no --errors: Twilio's own examples fail their schema).
            exec "$PRISM" mock "$TWILIO_SPEC" -p "${TWILIO_MOCK_PORT:?}" -h 127.0.0.1 ;;
        "$VERIFY_MOCK")
            exec "$PRISM" mock "$VERIFY_SPEC" -p "${TWILIO_VERIFY_MOCK_PORT:?}" -h 127.0.0.1 ;;
        "$GAZETTEER")
            exec "$VENV/bin/python" -m geo.gazetteer --host 127.0.0.1 --port "${GAZETTEER_PORT:?}" ;;
        *)
            die "unknown service: $1" ;;
    esac
}

pid_file() { echo "$RUN_DIR/$1.pid"; }

# Pid of a running service of this checkout, or nothing (no pid file, process gone, or the pid
# reused by another program: other working directory).
service_pid() {
    local f pid cwd
    f="$(pid_file "$1")"
    [ -f "$f" ] || return 0
    pid="$(cat "$f" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        if [ -d /proc ]; then
            cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
            if [ "$cwd" = "$ROOT" ]; then echo "$pid"; return 0; fi
        else
            echo "$pid"; return 0
        fi
    fi
}

# True while any process of the session/process group led by $1 is alive.
group_alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }

wait_gone() {   # pid seconds
    local i
    for i in $(seq 1 $(($2 * 5))); do
        group_alive "$1" || return 0
        sleep 0.2
    done
    ! group_alive "$1"
}

stop_service() {
    local name="$1" f pid
    f="$(pid_file "$name")"
    pid="$(service_pid "$name")"
    if [ -z "$pid" ]; then
        # The leader may have died (e.g. killed -9) and left children in its process group.
        # Linux hands out no pid that is still a live process group id, so while the pid itself
        # is free, members of group $pid are ours.
        pid="$(cat "$f" 2>/dev/null || true)"
        rm -f "$f"
        if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null && kill -0 -- "-$pid" 2>/dev/null; then
            log "stopping leftover processes of $name (process group $pid)"
            kill -TERM -- "-$pid" 2>/dev/null || true
            wait_gone "$pid" 5 || kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        return 0
    fi
    log "stopping $name (pid $pid)"
    # The leader first, so gunicorn and RQ shut their children down themselves; then the group.
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 15; then
        warn "$name did not stop within 15 s: terminating its process group"
        kill -TERM -- "-$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

start_service() {
    local name="$1" logf="$LOG_DIR/$1.log" pid
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    printf '\n===== %s: starting %s =====\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$name" >>"$logf"
    # fd 9 is our lock: the long-lived process must not inherit it.
    setsid bash "$ROOT/scripts/services.sh" __exec "$name" </dev/null >>"$logf" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$(pid_file "$name")"
    log "started $name (pid $pid, log ${logf#"$ROOT"/})"
}

load_env() {
    [ -f "$ENV_FILE" ] || die "$ENV_FILE is missing: run scripts/provision.sh (make provision) first"
    # shellcheck source=/dev/null
    . "$ENV_FILE"
    if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
        die "$ENV_FILE does not set DATABASE_URL and REDIS_URL"
    fi
    [ -x "$VENV/bin/flask" ] || die "$VENV/bin/flask is missing: run make provision"
}

# True once Prism answers GET / at all (404: no such operation, but it is listening).
mock_ready() {
    "$VENV/bin/python" - "http://127.0.0.1:$1/" <<'PY' >/dev/null 2>&1
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2).close()
except urllib.error.HTTPError:
    pass
PY
}

# Start twilio-mock and twilio-verify-mock on free ports (sets TWILIO_MOCK_PORT and
# TWILIO_VERIFY_MOCK_PORT); wait_mock_ready waits for them.
start_mock() {
    local explicit=0 major minor
    [ -x "$PRISM" ] || die "$PRISM is missing: run make npm (npm ci installs Prism)"
    [ -f "$TWILIO_SPEC" ] || die "Twilio's OpenAPI spec not found at $TWILIO_SPEC:" \
        "run make npm (npm ci installs it), or set TWILIO_OPENAPI_SPEC, or TWILIO_ACCOUNT_SID" \
        "and friends for the real Twilio"
    [ -f "$VERIFY_SPEC" ] || die "Twilio's Verify spec not found at $VERIFY_SPEC:" \
        "run make npm (npm ci installs it), or set TWILIO_VERIFY_OPENAPI_SPEC"
    IFS=. read -r major minor _ < <(node -p process.versions.node 2>/dev/null || echo 0.0.0)
    if [ "$major" -lt 18 ] || { [ "$major" -eq 18 ] && [ "$minor" -lt 20 ]; }; then
        warn "Prism 5.14 needs Node.js >= 18.20.1; this is $(node --version 2>/dev/null || echo 'no node')"
    fi
    [ -n "${TWILIO_MOCK_PORT:-}" ] && explicit=1
    TWILIO_MOCK_PORT="$(pick_port "${TWILIO_MOCK_PORT:-4010}" "$explicit" "Twilio mock (Prism)")"
    export TWILIO_MOCK_PORT
    start_service "$MOCK"
    echo "$TWILIO_MOCK_PORT" >"$RUN_DIR/$MOCK.port"
    explicit=0
    [ -n "${TWILIO_VERIFY_MOCK_PORT:-}" ] && explicit=1
    TWILIO_VERIFY_MOCK_PORT="$(pick_port "${TWILIO_VERIFY_MOCK_PORT:-4020}" "$explicit" "Twilio Verify mock (Prism)")"
    export TWILIO_VERIFY_MOCK_PORT
    start_service "$VERIFY_MOCK"
    echo "$TWILIO_VERIFY_MOCK_PORT" >"$RUN_DIR/$VERIFY_MOCK.port"
}

wait_mock_ready() {
    local deadline=$((SECONDS + ${MOCK_TIMEOUT:-60})) name port
    for name in "$MOCK" "$VERIFY_MOCK"; do
        port="$(cat "$RUN_DIR/$name.port")"
        log "waiting for $name on http://127.0.0.1:$port/"
        until mock_ready "$port"; do
            if [ -z "$(service_pid "$name")" ]; then
                show_tail "$LOG_DIR/$name.log"
                die "$name (Prism) exited during start-up"
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                show_tail "$LOG_DIR/$name.log"
                die "$name (Prism) did not answer within ${MOCK_TIMEOUT:-60} s (still running: make stop)"
            fi
            sleep 0.3
        done
    done
}

# Start the gazetteer on a free port and point GEOCODER_URL at it (it loads in well under a
# second; wait_gazetteer_ready waits all the same).
start_gazetteer() {
    local explicit=0
    [ -n "${GAZETTEER_PORT:-}" ] && explicit=1
    GAZETTEER_PORT="$(pick_port "${GAZETTEER_PORT:-8070}" "$explicit" "gazetteer")"
    export GAZETTEER_PORT
    start_service "$GAZETTEER"
    echo "$GAZETTEER_PORT" >"$RUN_DIR/$GAZETTEER.port"
    export GEOCODER_URL="http://127.0.0.1:$GAZETTEER_PORT"
}

wait_gazetteer_ready() {
    local deadline=$((SECONDS + 30))
    until mock_ready "$GAZETTEER_PORT"; do
        if [ -z "$(service_pid "$GAZETTEER")" ] || [ "$SECONDS" -ge "$deadline" ]; then
            show_tail "$LOG_DIR/$GAZETTEER.log"
            die "$GAZETTEER did not start (the others may still run: make stop)"
        fi
        sleep 0.2
    done
}

# Decide real or mocked Twilio and export what the app reads. Sets TWILIO_MODE.
twilio_env() {
    export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}"
    if [ -n "${TWILIO_ACCOUNT_SID:-}" ]; then
        TWILIO_MODE=real
        [ -n "${TWILIO_AUTH_TOKEN:-}" ] || warn "TWILIO_ACCOUNT_SID is set but TWILIO_AUTH_TOKEN is not"
        [ -n "${TWILIO_VERIFY_SERVICE_SID:-}" ] || warn "TWILIO_VERIFY_SERVICE_SID is not set: phones cannot be confirmed"
        case "$PUBLIC_BASE_URL" in
            http://127.0.0.1*|http://localhost*)
                warn "real Twilio cannot reach PUBLIC_BASE_URL=$PUBLIC_BASE_URL for its callbacks" ;;
        esac
        return 0
    fi
    TWILIO_MODE=mock
    export TWILIO_ACCOUNT_SID="$MOCK_ACCOUNT_SID"
    export TWILIO_AUTH_TOKEN="dev-token"
    export TWILIO_API_BASE_URL="http://127.0.0.1:$TWILIO_MOCK_PORT"
    export TWILIO_VERIFY_BASE_URL="http://127.0.0.1:$TWILIO_VERIFY_MOCK_PORT"
    export TWILIO_MESSAGING_FROM="${TWILIO_MESSAGING_FROM:-+15005550006}"
}

healthy() {
    "$VENV/bin/python" - "http://127.0.0.1:$PORT/healthz" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

wait_healthy() {
    local deadline=$((SECONDS + ${HEALTH_TIMEOUT:-60})) pid
    until healthy; do
        pid="$(service_pid web)"
        if [ -z "$pid" ]; then
            show_tail "$LOG_DIR/web.log"
            die "web exited during start-up"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            show_tail "$LOG_DIR/web.log"
            die "web did not answer GET /healthz with 200 within ${HEALTH_TIMEOUT:-60} s (still running: make stop)"
        fi
        sleep 0.5
    done
}

cmd_stop() {
    local i
    for ((i = ${#ALL_SERVICES[@]} - 1; i >= 0; i--)); do
        stop_service "${ALL_SERVICES[$i]}"
    done
    rm -f "$RUN_DIR/$MOCK.port" "$RUN_DIR/$VERIFY_MOCK.port" "$RUN_DIR/$GAZETTEER.port"
}

cmd_run() {
    local name services=() started=() TWILIO_MODE
    take_lock services
    for name in "${SERVICES[@]}"; do
        if [ "$name" != "$FLEET" ] || [ "${DEMO_FLEET:-1}" != 0 ]; then services+=("$name"); fi
    done
    started=("${services[@]}")
    load_env
    export DATABASE_URL REDIS_URL PORT
    cmd_stop
    if port_in_use "$PORT"; then
        die "port $PORT is in use by another program: stop it, or choose another port (make run PORT=8001)"
    fi
    cd "$ROOT"
    # Prism loads its 1.8 MB spec (a few seconds) while the migrations run.
    if [ -z "${TWILIO_ACCOUNT_SID:-}" ]; then
        start_mock
        started=("$MOCK" "$VERIFY_MOCK" "${services[@]}")
    fi
    if [ -z "${GEOCODER_URL:-}" ]; then
        start_gazetteer
        started+=("$GAZETTEER")
    fi
    twilio_env
    log "applying migrations"
    "$VENV/bin/flask" --app dispatch db upgrade -d migrations
    log "seeding demo data"
    "$VENV/bin/flask" --app dispatch seed-demo
    [ "$TWILIO_MODE" = real ] || wait_mock_ready
    [ -z "$(service_pid "$GAZETTEER")" ] || wait_gazetteer_ready
    for name in "${services[@]}"; do
        start_service "$name"
    done
    log "waiting for http://127.0.0.1:$PORT/healthz"
    wait_healthy
    for name in "${started[@]}"; do
        if [ -z "$(service_pid "$name")" ]; then
            show_tail "$LOG_DIR/$name.log"
            die "$name exited during start-up (the others still run: make stop)"
        fi
    done
    echo
    echo "dispatch is running at http://127.0.0.1:$PORT/"
    if [ "$TWILIO_MODE" = real ]; then
        echo "twilio: REAL (account $TWILIO_ACCOUNT_SID from the environment${TWILIO_API_BASE_URL:+, API at $TWILIO_API_BASE_URL}): SMS and calls are really sent"
    else
        echo "twilio: mocked by Prism at $TWILIO_API_BASE_URL, Verify at $TWILIO_VERIFY_BASE_URL (no SMS leaves this machine; set TWILIO_ACCOUNT_SID etc. for the real one)"
    fi
    if [ -n "$(service_pid "$GAZETTEER")" ]; then
        echo "addresses: the demo gazetteer at $GEOCODER_URL (set GEOCODER_URL for a real Nominatim)"
    else
        echo "addresses: ${GEOCODER_URL:-none (GEOCODER_URL is empty: the pin alone is used)}"
    fi
    echo "logs: ${LOG_DIR#"$ROOT"/}/{$(IFS=,; echo "${started[*]}")}.log  (PostgreSQL: .local/pg/log, Redis: .local/redis/redis.log)"
    echo "stop: make stop"
}

cmd_status() {
    local name pid extra
    for name in "${ALL_SERVICES[@]}"; do
        pid="$(service_pid "$name")"
        extra=""
        if [ -f "$RUN_DIR/$name.port" ]; then
            extra=" on http://127.0.0.1:$(cat "$RUN_DIR/$name.port")/"
        fi
        if [ -n "$pid" ]; then
            printf '%-12s running (pid %s)%s\n' "$name:" "$pid" "$extra"
        else
            printf '%-12s not running\n' "$name:"
        fi
    done
}

case "${1:-}" in
    run)    cmd_run ;;
    stop)   take_lock services; cmd_stop ;;
    status) cmd_status ;;
    __exec) exec_service "${2:?service name}" ;;
    *)      die "usage: $0 run|stop|status" ;;
esac
