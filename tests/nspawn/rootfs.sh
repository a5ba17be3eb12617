#!/bin/sh
# Build, once, the Debian root that the real-systemd tests boot with
# systemd-nspawn: target/nspawn/rootfs (about a minute; reused while the
# package list below is unchanged). Safe to run from parallel tests.
set -eu
dir=${1:-"$(dirname "$0")/../../target/nspawn"}
packages=systemd,systemd-sysv,dbus,python3,nginx,sqlite3,openssl,ca-certificates,curl,procps
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if [ -x "$dir/rootfs/sbin/init" ] && [ "$(cat "$dir/rootfs.packages" 2>/dev/null)" = "$packages" ]; then
    exit 0
fi
rm -rf "$dir/rootfs" "$dir/rootfs.new" "$dir/rootfs.packages"
mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$dir/rootfs.new" >"$dir/mmdebstrap.log" 2>&1 ||
    { cat "$dir/mmdebstrap.log" >&2; exit 1; }
mv "$dir/rootfs.new" "$dir/rootfs"
echo "$packages" >"$dir/rootfs.packages"
