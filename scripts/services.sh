#!/usr/bin/env bash
# Run dispatch's own processes in the background: web (gunicorn), worker (RQ) and sweeper.
# Pid files in .local/run/NAME.pid, logs in .local/log/NAME.log. Each process leads its own
# session (setsid), so stopping it also stops its children (gunicorn workers, RQ work horses).
#
# Usage: scripts/services.sh run|stop|status
#   run     (re)start: stop our running processes, migrate, seed demo data, start web + worker +
#           sweeper, wait until GET /healthz answers 200, print the URL. Needs .local/env.sh
#           (scripts/provision.sh writes it).
#   stop    stop web, worker and sweeper (not PostgreSQL/Redis: see scripts/provision.sh stop)
#   status  show which of them run
#
# Environment: PORT (web port, default 8000), HEALTH_TIMEOUT (seconds, default 60).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUN_DIR="$LOCAL/run"
LOG_DIR="$LOCAL/log"
PORT="${PORT:-8000}"
SERVICES=(worker sweeper web)         # start order; stop runs in reverse

# The command of each service; exec'd in the service's own session by `__exec`.
exec_service() {
    cd "$ROOT"
    export PYTHONUNBUFFERED=1
    case "$1" in
        web)
            exec "$VENV/bin/gunicorn" --bind "127.0.0.1:$PORT" --worker-class gevent \
                --worker-connections 10000 --workers 1 --access-logfile - 'dispatch.wsgi:app' ;;
        worker)
            exec "$VENV/bin/rq" worker --worker-class rq.worker.SimpleWorker --with-scheduler --url "$REDIS_URL" dispatch ;;
        sweeper)
            exec "$VENV/bin/flask" --app dispatch sweeper ;;
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
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        stop_service "${SERVICES[$i]}"
    done
}

cmd_run() {
    local name
    take_lock services
    load_env
    export DATABASE_URL REDIS_URL PORT
    cmd_stop
    if port_in_use "$PORT"; then
        die "port $PORT is in use by another program: stop it, or choose another port (make run PORT=8001)"
    fi
    cd "$ROOT"
    log "applying migrations"
    "$VENV/bin/flask" --app dispatch db upgrade -d migrations
    log "seeding demo data"
    "$VENV/bin/flask" --app dispatch seed-demo
    for name in "${SERVICES[@]}"; do
        start_service "$name"
    done
    log "waiting for http://127.0.0.1:$PORT/healthz"
    wait_healthy
    for name in "${SERVICES[@]}"; do
        if [ -z "$(service_pid "$name")" ]; then
            show_tail "$LOG_DIR/$name.log"
            die "$name exited during start-up (the others still run: make stop)"
        fi
    done
    echo
    echo "dispatch is running at http://127.0.0.1:$PORT/"
    echo "logs: ${LOG_DIR#"$ROOT"/}/{web,worker,sweeper}.log  (PostgreSQL: .local/pg/log, Redis: .local/redis/redis.log)"
    echo "stop: make stop"
}

cmd_status() {
    local name pid
    for name in "${SERVICES[@]}"; do
        pid="$(service_pid "$name")"
        if [ -n "$pid" ]; then printf '%-8s running (pid %s)\n' "$name:" "$pid"; else printf '%-8s not running\n' "$name:"; fi
    done
}

case "${1:-}" in
    run)    cmd_run ;;
    stop)   take_lock services; cmd_stop ;;
    status) cmd_status ;;
    __exec) exec_service "${2:?service name}" ;;
    *)      die "usage: $0 run|stop|status" ;;
esac
