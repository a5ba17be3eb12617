#!/bin/sh
# A stand-in for `systemctl` on a sandbox root (systemd is not PID 1 on the
# test machines), for the container tests and bench/options.sh: it runs a
# container unit's ExecStart= with the real podman, as systemd would
# (specifiers and ${VARIABLES} expanded, the unit's EnvironmentFile read),
# with every host path of a --volume placed under the sandbox root; any
# other service's ExecStart= (which must then name sandbox paths itself) is
# started in the background and stopped by its pid. Everything it is asked
# is appended to ROOT/services.log.
# Usage: systemctl.sh ROOT <systemctl arguments…>
set -eu
root=$1
shift
echo "systemctl $*" >>"$root/services.log"
units=/etc/systemd/system
container_unit() {
    grep -q '^ExecStart=/usr/bin/podman run' "$root$units/$1" 2>/dev/null
}
plain_unit() {
    case $1 in *.service) grep -q '^ExecStart=' "$root$units/$1" 2>/dev/null ;; *) return 1 ;; esac
}
start_plain() {
    stop_plain "$1"
    cmd=$(sed -n 's/^ExecStart=//p' "$root$units/$1")
    mkdir -p "$root/run"
    # shellcheck disable=SC2086
    setsid $cmd >>"$root/services.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$root/run/$1.pid"
    # Return only once it is in a session of its own: the caller kills its
    # own process group when this script ends.
    while kill -0 "$pid" 2>/dev/null && [ "$(ps -o sid= -p "$pid" | tr -d ' ')" != "$pid" ]; do
        sleep 0.01
    done
}
stop_plain() {
    if [ -f "$root/run/$1.pid" ]; then
        kill "$(cat "$root/run/$1.pid")" 2>/dev/null || true
        rm -f "$root/run/$1.pid"
    fi
}
start() {
    unit=$1
    if ! container_unit "$unit"; then
        if plain_unit "$unit"; then start_plain "$unit"; fi
        return 0
    fi
    env_file=$(sed -n 's/^EnvironmentFile=//p' "$root$units/$unit")
    # shellcheck disable=SC1090
    . "$root$env_file"
    # ExecStart= with its continuation lines, as one line.
    cmd=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$root$units/$unit" | sed 's/^ExecStart=//; s/\\$//' | tr '\n' ' ')
    cmd=$(printf '%s' "$cmd" | sed \
        -e "s|%t/%n.ctr-id|$root/run/$unit.ctr-id|g" \
        -e "s|\${PLUMB_UID}|$PLUMB_UID|g; s|\${PLUMB_GID}|$PLUMB_GID|g" \
        -e "s|--volume=\"/|--volume=\"$root/|g" \
        -e 's|\$\$|$|g; s|%%|%|g')
    mkdir -p "$root/run"
    podman rm --force --ignore --cidfile="$root/run/$unit.ctr-id" >/dev/null 2>&1 || true
    rm -f "$root/run/$unit.ctr-id"
    eval "$cmd" >>"$root/services.log" 2>&1
}
stop() {
    stop_plain "$1"
    container_unit "$1" || return 0
    podman rm --force --ignore --time=1 --cidfile="$root/run/$1.ctr-id" >/dev/null 2>&1 || true
    rm -f "$root/run/$1.ctr-id"
}
verb=$1
shift
case $verb in
enable)
    if [ "${1:-}" = --now ]; then
        shift
        for unit; do start "$unit"; done
    fi
    ;;
restart | start | try-restart | reload-or-restart)
    for unit; do start "$unit"; done
    ;;
stop | disable)
    [ "${1:-}" = --now ] && shift
    for unit; do stop "$unit"; done
    ;;
is-active)
    for _ in "$@"; do echo active; done
    ;;
*) ;;
esac
