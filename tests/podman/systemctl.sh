#!/bin/sh
# A stand-in for `systemctl` on a sandbox root (systemd is not PID 1 on the
# test machines), for the container tests: it runs a container unit's
# ExecStart= with the real podman, as systemd would (specifiers and
# ${VARIABLES} expanded, the unit's EnvironmentFile read), with every host
# path of a --volume placed under the sandbox root. Everything it is asked
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
start() {
    unit=$1
    container_unit "$unit" || return 0
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
