#!/usr/bin/env bash
# Provision what dispatch needs on this machine, idempotently:
#   - Debian packages postgresql-15-postgis-3, redis-server and chromium (for the browser tests:
#     only /usr/bin/chromium is used; never `playwright install`), plus nodejs and npm when there
#     is no npm (installed when absent, root only)
#   - the Python virtualenv .venv from the lock file requirements/dev.lock (pip install -r, then
#     pip install --no-deps -e .) when the lock or pyproject.toml is newer than .venv/.installed;
#     packages the lock no longer names are removed, and a lock that does not satisfy
#     pyproject.toml is an error (run make lock)
#   - node_modules/: the front-end libraries, and the devDependencies of the local mock of Twilio's
#     API for tests and make run: Stoplight Prism, and @twilio-alpha/mcp for the Twilio OpenAPI
#     spec it ships (npm ci --include=dev when package-lock.json or package.json is newer than
#     node_modules/.package-lock.json, which npm ci writes last)
#   - a project-local PostgreSQL cluster (.local/pg, port 55432) unless DATABASE_URL is set
#   - a project-local Redis (.local/redis, port 56379) unless REDIS_URL is set
# and writes the chosen URLs to .local/env.sh (export lines; `. .local/env.sh` to use them).
#
# Usage: scripts/provision.sh [all|packages|venv|lock|npm|stop|status]
#   all      (default) everything above
#   packages Debian packages only
#   venv     Debian-independent part: the virtualenv only
#   lock     regenerate requirements/dev.lock and requirements/main.lock from pyproject.toml with
#            uv pip compile (further arguments go to it: --upgrade, --upgrade-package NAME), then
#            install the new dev lock into .venv
#   npm      node_modules/ only (and nodejs/npm from Debian when npm is missing, as root)
#   stop     stop the local PostgreSQL cluster and local Redis, if running
#   status   show what is running
#
# Environment: DATABASE_URL, REDIS_URL (use these servers instead of local ones),
# PG_PORT (default 55432), REDIS_PORT (default 56379), PYTHON (interpreter for the venv),
# PG_BIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_USER_OS="postgres"     # OS user that owns the cluster when we run as root

# As root the cluster runs as 'postgres', which must be able to enter every folder above it.
pg_can_reach() {
    local path="" comp comps
    is_root || return 0
    IFS=/ read -ra comps <<<"${ROOT#/}"
    for comp in "${comps[@]}"; do
        path="$path/$comp"
        runuser -u "$PG_USER_OS" -- test -x "$path" || return 1
    done
}


# The cluster lives in .local/pg; when 'postgres' cannot enter the checkout (a clone under
# /root, say), it lives in a folder of its own outside, named after the checkout's path.
PG_DIR="$LOCAL/pg"
if ! pg_can_reach; then
    PG_DIR="/var/lib/dispatch-local/$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)/pg"
fi
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$PG_DIR/log"
PG_DB="dispatch"
REDIS_DIR="$LOCAL/redis"
DEBIAN_PACKAGES=(postgresql-15-postgis-3 redis-server chromium curl jq)   # curl, jq: the README's commands (tests/test_readme.py runs them)
NPM_PACKAGES=(nodejs npm)   # Debian's, installed only when there is no npm command at all

# --------------------------------------------------------------------------- packages

dpkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

APT_UPDATED=0

# apt-get install -y PACKAGES..., running apt-get update once per provisioning (root only).
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get -o DPkg::Lock::Timeout=300 -q update
        APT_UPDATED=1
    fi
    apt-get -o DPkg::Lock::Timeout=300 -q install -y --no-install-recommends "$@"
}

# The Debian packages to install: DEBIAN_PACKAGES not installed, and nodejs/npm when npm is missing.
missing_packages() {
    local p
    for p in "${DEBIAN_PACKAGES[@]}"; do
        dpkg_installed "$p" || printf '%s\n' "$p"
    done
    if ! command -v npm >/dev/null 2>&1; then
        for p in "${NPM_PACKAGES[@]}"; do
            dpkg_installed "$p" || printf '%s\n' "$p"
        done
    fi
}

ensure_packages() {
    local missing=()
    command -v dpkg-query >/dev/null 2>&1 || { warn "not a Debian system: skipping the package check"; return 0; }
    mapfile -t missing < <(missing_packages)
    [ ${#missing[@]} -gt 0 ] || return 0
    if ! is_root; then
        warn "missing Debian packages: ${missing[*]}; not root, so not installing them" \
             "(run: sudo apt-get install -y ${missing[*]})"
        return 0
    fi
    log "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
}

# --------------------------------------------------------------------------- venv

find_python() {
    local c
    for c in "${PYTHON:-}" python3.11 python3; do
        if [ -z "$c" ] || ! command -v "$c" >/dev/null 2>&1; then continue; fi
        if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

# The lock files (scripts/venvcheck.py and make lock). dev.lock = runtime + dev, for .venv;
# main.lock = runtime only, for the Docker image; both pin the same versions.
DEV_LOCK="$ROOT/requirements/dev.lock"
MAIN_LOCK="$ROOT/requirements/main.lock"

# .venv with a working interpreter (no packages beyond pip).
ensure_venv_python() {
    local py
    [ -f "$ROOT/pyproject.toml" ] || die "no pyproject.toml in $ROOT: nothing to install"
    # A venv whose interpreter no longer runs, or that was made for another path (a moved or
    # copied checkout: its scripts' #! lines point there), is made anew.
    if [ -e "$VENV/bin/python" ] && { ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 ||
        [[ "$(head -n 1 "$VENV/bin/pip" 2>/dev/null)" != "#!$VENV/bin/"* ]]; }; then
        warn ".venv is broken or belongs to another path: recreating it"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        py="$(find_python)" || die "Python >= 3.11 with venv not found (set PYTHON=/path/to/python3.11)"
        log "creating .venv with $(command -v "$py")"
        "$py" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
            || warn "could not upgrade pip in .venv; continuing with the bundled one"
    fi
}

ensure_venv() {
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check) extra=()
    ensure_venv_python
    [ -f "$DEV_LOCK" ] || die "no ${DEV_LOCK#"$ROOT"/}: run make lock"
    # -nt is also true when the stamp does not exist.
    if [ "$DEV_LOCK" -nt "$VENV/.installed" ] || [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]; then
        log "installing Python dependencies: pip install -r ${DEV_LOCK#"$ROOT"/}; pip install --no-deps -e ."
        rm -f "$VENV/.installed"
        # The lock has hashes, so pip checks every file and refuses anything the lock does not pin.
        "${pip[@]}" install -q -r "$DEV_LOCK"
        (cd "$ROOT" && "${pip[@]}" install -q --no-deps -e .)
        mapfile -t extra < <("$VENV/bin/python" "$ROOT/scripts/venvcheck.py" extraneous "$DEV_LOCK")
        if [ ${#extra[@]} -gt 0 ]; then
            log "removing packages the lock does not name: ${extra[*]}"
            "${pip[@]}" uninstall -q -y "${extra[@]}"
        fi
        "$VENV/bin/python" "$ROOT/scripts/venvcheck.py" unmet \
            || die "${DEV_LOCK#"$ROOT"/} does not satisfy pyproject.toml (see above): run make lock"
        touch "$VENV/.installed"
    else
        log ".venv is up to date (${DEV_LOCK#"$ROOT"/} and pyproject.toml are older than .venv/.installed)"
    fi
}

# Regenerate both lock files with uv (pinned by dev.lock itself), then install the dev lock.
# uv rather than pip-tools: one self-contained binary from PyPI that does not ride on pip's
# internals (provisioning upgrades pip), and --universal resolves for every platform and
# Python >= 3.11 at once, so the lock does not depend on the machine that ran make lock.
# dev.lock is resolved first; main.lock is then constrained by it, so the image runs the
# versions the tests ran (a subset of a valid resolution is always found).
cmd_lock() {
    local uv="$VENV/bin/uv" want flags
    ensure_venv_python
    if [ ! -x "$uv" ]; then
        want="$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$DEV_LOCK" 2>/dev/null || true)"
        log "installing uv${want:+ $want} into .venv for make lock"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv${want:+==$want}"
    fi
    flags=(--universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"
           --quiet)
    mkdir -p "$(dirname "$DEV_LOCK")"
    log "resolving ${DEV_LOCK#"$ROOT"/} (runtime + dev) and ${MAIN_LOCK#"$ROOT"/} (runtime)"
    (cd "$ROOT" && "$uv" pip compile pyproject.toml --extra dev "${flags[@]}" "$@" \
        -o "${DEV_LOCK#"$ROOT"/}")
    (cd "$ROOT" && "$uv" pip compile pyproject.toml -c "${DEV_LOCK#"$ROOT"/}" "${flags[@]}" "$@" \
        -o "${MAIN_LOCK#"$ROOT"/}")
    ensure_venv
}

# --------------------------------------------------------------------------- npm

# npm itself: from Debian (nodejs npm) when missing and we are root; otherwise a clear error.
ensure_npm_command() {
    command -v npm >/dev/null 2>&1 && return 0
    if is_root && command -v apt-get >/dev/null 2>&1; then
        log "npm not found: installing Debian packages ${NPM_PACKAGES[*]}"
        apt_install "${NPM_PACKAGES[@]}"
        hash -r
        command -v npm >/dev/null 2>&1 && return 0
        die "npm is still missing after apt-get install ${NPM_PACKAGES[*]}"
    fi
    die "npm not found: install Node.js (>= 18) with npm (Debian: sudo apt-get install -y ${NPM_PACKAGES[*]}), then rerun"
}

# node_modules/ from package-lock.json. npm ci writes node_modules/.package-lock.json last, so it is
# the stamp: missing (never installed, or interrupted) or older than the lock file means reinstall.
ensure_node_modules() {
    local stamp="$ROOT/node_modules/.package-lock.json"
    [ -f "$ROOT/package-lock.json" ] || die "no package-lock.json in $ROOT: run npm install to make it"
    # -nt is also true when the stamp does not exist. package.json is checked too, so an edit
    # without a new lock file makes npm ci fail loudly instead of going unnoticed.
    if [ "$ROOT/package-lock.json" -nt "$stamp" ] || [ "$ROOT/package.json" -nt "$stamp" ]; then
        ensure_npm_command
        log "installing node_modules (front-end libraries, Prism, Twilio's spec): npm ci"
        rm -f "$stamp"
        # --include=dev: Prism and the spec are devDependencies, and NODE_ENV=production or an
        # omit=dev npm setting would otherwise leave them out.
        (cd "$ROOT" && npm ci --include=dev --no-audit --no-fund)
    else
        log "node_modules is up to date (package-lock.json is older than node_modules/.package-lock.json)"
    fi
}

# --------------------------------------------------------------------------- postgres

# Run a PostgreSQL server binary as the cluster's owner: initdb and pg_ctl refuse root.
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_USER_OS" -- "$@")
    else
        (cd / && "$@")
    fi
}

pg_running() {
    [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# Port of the running local cluster (4th line of postmaster.pid).
pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid"; }

psql_local() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres "${@:2}"
}

pg_init() {
    if [ -d "$PG_DATA" ] && [ -n "$(ls -A "$PG_DATA" 2>/dev/null)" ]; then
        die "$PG_DATA exists but holds no cluster (no PG_VERSION): remove it (make clean) and retry"
    fi
    log "creating the local PostgreSQL cluster in $PG_DATA"
    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$PG_DIR/initdb.log" 2>&1; then
        show_tail "$PG_DIR/initdb.log"
        die "initdb failed"
    fi
}

start_pg() {
    local port sock opts explicit=0
    [ -x "$PG_BIN/pg_ctl" ] || die "PostgreSQL server binaries not found in $PG_BIN (apt-get install postgresql-15, or set PG_BIN)"
    [ -n "${PG_PORT:-}" ] && explicit=1
    [ "$PG_DIR" = "$LOCAL/pg" ] || log "'$PG_USER_OS' cannot enter $ROOT; the cluster lives in $PG_DIR"
    mkdir -p "$PG_DIR" "$PG_SOCK"
    if is_root; then
        chown "$PG_USER_OS:$PG_USER_OS" "$PG_DIR" "$PG_SOCK"
        chmod 0700 "$PG_DIR"
    fi

    if pg_running; then
        port="$(pg_running_port)"
        log "local PostgreSQL already running on port $port ($PG_DATA)"
    else
        [ -f "$PG_DATA/PG_VERSION" ] || pg_init
        port="$(pick_port "${PG_PORT:-55432}" "$explicit" PostgreSQL)"
        # The socket path must fit in sun_path (108 bytes); TCP is what we use, so drop the socket if too long.
        sock="$PG_SOCK"
        [ ${#sock} -le 90 ] || { warn "path too long for a Unix socket: PostgreSQL listens on TCP only"; sock=""; }
        # pg_ctl hands -o to /bin/sh, hence the quoting.
        opts="-p $port -k $(shq "$sock") -c listen_addresses=127.0.0.1"
        log "starting local PostgreSQL on 127.0.0.1:$port (log: ${PG_LOG#"$ROOT"/})"
        # 9>&-: the server must not inherit (and so hold) our lock.
        if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -o "$opts" -w -t 60 start >/dev/null 9>&-; then
            show_tail "$PG_LOG"
            die "could not start the local PostgreSQL cluster"
        fi
    fi

    local i
    for i in $(seq 1 30); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        [ "$i" -lt 30 ] || { show_tail "$PG_LOG"; die "local PostgreSQL on port $port does not accept connections"; }
        sleep 1
    done
    if [ "$(psql_local "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
        log "creating database $PG_DB"
        psql_local "$port" -c "CREATE DATABASE $PG_DB"
    fi
    DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$port/$PG_DB"
}

stop_pg() {
    if pg_running; then
        log "stopping local PostgreSQL (port $(pg_running_port))"
        # A fast shutdown ends with a checkpoint, which on a machine whose cores are busy
        # elsewhere can outlast pg_ctl's wait; then an immediate one (the next start replays
        # the WAL: nothing committed is lost), so make stop never leaves the server up.
        if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 120 stop >/dev/null; then
            warn "PostgreSQL did not finish its fast shutdown in 120 s: stopping it immediately"
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 60 stop >/dev/null
        fi
    fi
}

# --------------------------------------------------------------------------- redis

redis_port_file() { cat "$REDIS_DIR/port" 2>/dev/null; }

# True when the Redis answering on our recorded port is the one working in .local/redis.
redis_running() {
    local port dir
    port="$(redis_port_file)" || return 1
    [ -n "$port" ] || return 1
    dir="$(redis-cli -h 127.0.0.1 -p "$port" --raw CONFIG GET dir 2>/dev/null | sed -n 2p)" || return 1
    [ "$dir" = "$REDIS_DIR" ]
}

start_redis() {
    local port explicit=0 i
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found (apt-get install redis-server), or set REDIS_URL"
    [ -n "${REDIS_PORT:-}" ] && explicit=1
    mkdir -p "$REDIS_DIR"
    if redis_running; then
        port="$(redis_port_file)"
        log "local Redis already running on port $port"
    else
        port="$(pick_port "${REDIS_PORT:-56379}" "$explicit" Redis)"
        log "starting local Redis on 127.0.0.1:$port (log: ${REDIS_DIR#"$ROOT"/}/redis.log)"
        echo "$port" >"$REDIS_DIR/port"
        redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
            --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" 9>&-
        for i in $(seq 1 50); do
            [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
            [ "$i" -lt 50 ] || { show_tail "$REDIS_DIR/redis.log"; die "local Redis did not answer PING on port $port"; }
            sleep 0.2
        done
    fi
    REDIS_URL="redis://127.0.0.1:$port/0"
}

stop_redis() {
    local port pid i
    redis_running || return 0
    port="$(redis_port_file)"
    pid="$(cat "$REDIS_DIR/redis.pid" 2>/dev/null || true)"
    log "stopping local Redis (port $port)"
    redis-cli -h 127.0.0.1 -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    if [ -n "$pid" ]; then
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$REDIS_DIR/redis.pid"
}

# --------------------------------------------------------------------------- main

write_env() {
    local tmp="$ENV_FILE.tmp"
    {
        echo "# Written by scripts/provision.sh; rewritten on every provisioning. Use: . .local/env.sh"
        printf 'export DATABASE_URL=%s\n' "$(shq "$DATABASE_URL")"
        printf 'export REDIS_URL=%s\n' "$(shq "$REDIS_URL")"
    } >"$tmp"
    mv -f "$tmp" "$ENV_FILE"
}

cmd_all() {
    take_lock provision
    ensure_packages
    ensure_venv
    ensure_node_modules
    if [ -n "${DATABASE_URL:-}" ]; then
        log "using DATABASE_URL from the environment (no local PostgreSQL)"
    else
        start_pg
    fi
    if [ -n "${REDIS_URL:-}" ]; then
        log "using REDIS_URL from the environment (no local Redis)"
    else
        start_redis
    fi
    write_env
    log "environment written to ${ENV_FILE#"$ROOT"/}"
}

cmd_status() {
    if pg_running; then echo "postgres: running on 127.0.0.1:$(pg_running_port) ($PG_DATA)"; else echo "postgres: not running (local cluster)"; fi
    if redis_running; then echo "redis:    running on 127.0.0.1:$(redis_port_file)"; else echo "redis:    not running (local)"; fi
}

case "${1:-all}" in
    all)      cmd_all ;;
    packages) take_lock provision; ensure_packages ;;
    venv)     take_lock provision; ensure_venv ;;
    lock)     take_lock provision; shift; cmd_lock "$@" ;;
    npm)      take_lock provision; ensure_node_modules ;;
    stop)     take_lock provision; stop_pg; stop_redis ;;
    status)   cmd_status ;;
    *)        die "usage: $0 [all|packages|venv|lock|npm|stop|status]" ;;
esac
