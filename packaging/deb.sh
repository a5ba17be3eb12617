#!/bin/sh
# Build plumb's Debian package: the binary, its systemd units, docs, an
# example host config, shell completions and a man page per command.
#
#   packaging/deb.sh                  # builds the release binary first
#   packaging/deb.sh BINARY [OUTDIR]  # packages BINARY as it is
#
# Writes OUTDIR/plumb_<version>_<arch>.deb (default OUTDIR: target/debian)
# and prints its path. Needs dpkg-deb (Debian's dpkg). DEB_COMPRESSION
# (xz, gzip, none; default xz) is passed to dpkg-deb -Z.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ge 1 ]; then
    binary=$1
else
    (cd "$top" && cargo build --release --locked --quiet)
    binary=$top/target/release/plumb
fi
out=${2:-$top/target/debian}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

install -D -m 0755 "$binary" "$stage/usr/bin/plumb"
for unit in "$top"/systemd/*; do
    # The units name the source install's paths; the package's are /usr.
    install -D -m 0644 "$unit" "$stage/lib/systemd/system/$(basename "$unit")"
    sed -i -e 's|/usr/local/bin/plumb|/usr/bin/plumb|g' \
        -e 's|/usr/local/share/doc/plumb|/usr/share/doc/plumb|g' \
        "$stage/lib/systemd/system/$(basename "$unit")"
done
doc=$stage/usr/share/doc/plumb
install -d "$doc/examples"
install -m 0644 "$top"/README.md "$top"/docs/*.md "$doc/"
install -m 0644 "$top/packaging/plumb.yaml" "$doc/examples/plumb.yaml"
cp -r "$top/deploy-repo-example" "$doc/examples/deploy-repo-example"
find "$doc/examples" -name __pycache__ -prune -exec rm -rf {} +
printf 'plumb\n\nCopyright: the plumb authors\nLicense: MIT OR Apache-2.0\n' > "$doc/copyright"

"$binary" completions bash > "$stage/plumb.bash"
install -D -m 0644 "$stage/plumb.bash" "$stage/usr/share/bash-completion/completions/plumb"
"$binary" completions zsh > "$stage/plumb.zsh"
install -D -m 0644 "$stage/plumb.zsh" "$stage/usr/share/zsh/vendor-completions/_plumb"
"$binary" completions fish > "$stage/plumb.fish"
install -D -m 0644 "$stage/plumb.fish" "$stage/usr/share/fish/vendor_completions.d/plumb.fish"
rm "$stage"/plumb.bash "$stage"/plumb.zsh "$stage"/plumb.fish
"$binary" manpages "$stage/usr/share/man/man1"
gzip -9n "$stage"/usr/share/man/man1/*.1

install -d "$stage/DEBIAN"
install -m 0755 "$top/packaging/postinst" "$top/packaging/prerm" "$stage/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: plumb
Version: $version
Architecture: $arch
Maintainer: plumb developers <plumb@example.org>
Installed-Size: $size
Depends: libc6 (>= 2.36)
Recommends: openssh-client, nginx, sqlite3, systemd
Suggests: certbot, age
Section: admin
Priority: optional
Homepage: https://example.org/plumb
Description: pull-based GitOps agent for Linux hosts
 plumb fetches a git deploy repo, renders this host's systemd units, nginx
 sites and backup scripts, builds an immutable release and switches to it
 atomically; it validates before the switch, restarts only what changed,
 health-checks after it and rolls back by itself on failure.
CONTROL

mkdir -p "$out"
deb=$out/plumb_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"
