# shellcheck shell=bash disable=SC2034  # its variables are used by the scripts that source it
# Shared helpers for scripts/provision.sh and scripts/services.sh. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
LOCAL="$ROOT/.local"
VENV="$ROOT/.venv"
ENV_FILE="$LOCAL/env.sh"

log()  { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Quote a string for a POSIX shell (single quotes, embedded ' escaped).
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

# True when something accepts TCP connections on 127.0.0.1:PORT.
# shellcheck disable=SC2016  # $1 is expanded by the inner bash
port_in_use() { timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

# First free port from $1 (tries the next 20): pick_port WANT EXPLICIT WHAT. A port given
# explicitly (EXPLICIT=1: PG_PORT, REDIS_PORT, TWILIO_MOCK_PORT set by the user) is not moved.
pick_port() {
    local want="$1" explicit="$2" what="$3" p
    if ! port_in_use "$want"; then echo "$want"; return 0; fi
    [ "$explicit" = 1 ] && die "port $want (for $what) is in use by another program"
    for p in $(seq $((want + 1)) $((want + 20))); do
        if ! port_in_use "$p"; then
            warn "port $want is in use by another program: the local $what uses port $p instead"
            echo "$p"
            return 0
        fi
    done
    die "ports $want-$((want + 20)) are all in use: no port for the local $what"
}

# Take an exclusive lock for the rest of the calling script (released on exit).
take_lock() {
    mkdir -p "$LOCAL"
    exec 9>"$LOCAL/$1.lock"
    if ! flock -n 9; then
        log "waiting for another '$1' in this checkout to finish"
        flock 9
    fi
}

# Print the last lines of a log file to stderr, for failure messages.
show_tail() {
    [ -f "$1" ] || return 0
    printf -- '--- last lines of %s ---\n' "$1" >&2
    tail -n "${2:-30}" "$1" >&2 || true
    printf -- '---\n' >&2
}
