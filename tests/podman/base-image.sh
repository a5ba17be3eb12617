#!/bin/sh
# Make, once, the base image the container tests build on: Debian bookworm
# with python3, from Debian's packages (no registry is reachable here),
# imported into podman as localhost/python3:bookworm. The root tarball is
# cached under target/podman; the import is skipped while the image exists.
# Safe to run from parallel tests.
set -eu
dir=${1:-"$(dirname "$0")/../../target/podman"}
image=localhost/python3:bookworm
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if [ ! -s "$dir/python3-bookworm.tar" ]; then
    mmdebstrap --quiet --format=tar --variant=minbase --include=python3 bookworm "$dir/python3-bookworm.tar.new" \
        >"$dir/mmdebstrap.log" 2>&1 || { cat "$dir/mmdebstrap.log" >&2; exit 1; }
    mv "$dir/python3-bookworm.tar.new" "$dir/python3-bookworm.tar"
fi
if ! podman image exists "$image"; then
    podman import --quiet "$dir/python3-bookworm.tar" "$image" >/dev/null
fi
