#!/usr/bin/env bash
# The MicroBlog deployment options besides the full stack, measured with the
# release build (as root; needs podman, rsync, sshd, mmdebstrap):
#
#   bench/options.sh          # ROUNDS=5 by default; medians printed
#
#   1. the container image: a cold build (no layer cached; the base image is
#      local, from tests/podman/base-image.sh), a warm build (layers
#      cached), and what plumb does when podman already holds the tag
#      (`podman image exists`);
#   2. deploy to healthy of hosts/container.yaml in a sandbox whose
#      systemctl is tests/podman/systemctl.sh (it runs the unit's podman
#      command: systemd is not PID 1 here): a commit changing the app's
#      source (new image), and one changing only the unit (image reused);
#   3. publishing the example's built site after a deploy: to a local
#      directory, and over ssh to a loopback sshd.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
cargo build --release --quiet
tests/podman/base-image.sh
plumb=$PWD/target/release/plumb
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
    podman rm --force --ignore plumb-microblog >/dev/null 2>&1 || true
    for tag in $(podman images --noheading --format '{{.Repository}}:{{.Tag}}' \
        --filter reference=localhost/plumb-microblog --filter reference=localhost/plumb-bench); do
        podman rmi --force "$tag" >/dev/null 2>&1 || true
    done
    if [ -n "${sshd_pid:-}" ]; then kill "$sshd_pid" 2>/dev/null || true; fi
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
ms() { echo "($2 - $1) * 1000" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {printf "%.0f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# 1. The image.
ctx=$work/ctx
cp -r deploy-repo-example/app "$ctx"
build() { podman build --quiet "$@" --build-arg BASE=localhost/python3:bookworm -t localhost/plumb-bench:x "$ctx" >/dev/null; }
cold=() warm=() exists=()
for _ in $(seq "$rounds"); do
    t0=$(now); build --no-cache; t1=$(now); cold+=("$(ms "$t0" "$t1")")
    t0=$(now); build; t1=$(now); warm+=("$(ms "$t0" "$t1")")
    t0=$(now); podman image exists localhost/plumb-bench:x; t1=$(now); exists+=("$(ms "$t0" "$t1")")
done
echo "image build, cold:              $(printf '%s\n' "${cold[@]}" | median) ms"
echo "image build, warm (cached):     $(printf '%s\n' "${warm[@]}" | median) ms"
echo "image present (plumb reuses):   $(printf '%s\n' "${exists[@]}" | median) ms"

# 2. Deploy to healthy, as a container.
repo=$work/repo
git init -q -b main "$repo"
cp -r deploy-repo-example/. "$repo/"
commit() { git -C "$repo" add -A && git -C "$repo" -c user.email=b@e.org -c user.name=bench commit -qm "$1"; }
http=$(port)
sed -i -e 's/BASE: python:3.12-slim/BASE: localhost\/python3:bookworm/' \
    -e "s/{host: 8000, container: 8000}/{host: $http, container: 8000}/" "$repo/hosts/container.yaml"
printf '    health:\n      - http: http://127.0.0.1:%s/health\n        timeout: 60\n' "$http" >>"$repo/hosts/container.yaml"
# The pre-switch hook needs the host's python and paths: the database is
# made here instead, as in the tests.
python3 - "$repo/deploy.yaml" <<'EOF'
import re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r"    hooks:\n(?:      .*\n|        .*\n)+", "", s)
open(p, "w").write(s)
EOF
commit container
root=$work/root
mkdir -p "$root/var/lib/plumb/shared/microblog"
chmod 755 "$root"
python3 deploy-repo-example/app/bin/microblog upgrade-db --database "$root/var/lib/plumb/shared/microblog/microblog.db" >/dev/null
chown -R microblog: "$root/var/lib/plumb/shared/microblog" 2>/dev/null || {
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin microblog
    chown -R microblog: "$root/var/lib/plumb/shared/microblog"
}
cat >"$work/plumb.yaml" <<EOF
host_commands: execute
age_identity: $PWD/tests/fixtures/example-age.key
allow_paths: [/srv/www]
commands:
  systemctl: [sh, $PWD/tests/podman/systemctl.sh, $root]
  systemd_verify: ['true']
  nginx_test: ['true']
  nginx_reload: ['true']
EOF
reconcile() { "$plumb" reconcile --once --repo "$repo" --root "$root" --config "$work/plumb.yaml" --hostname "$1" "${@:2}"; }
# Deploy to healthy on host $1 ($2 names it): rounds of a commit changing
# the app's source, then one changing only the unit (restart_sec).
deploys() {
    local host=$1 fresh=() unit=() i t0 t1
    reconcile "$host" -q
    for i in $(seq "$rounds"); do
        echo "# $host $i" >>"$repo/app/microblog/server.py"
        commit "$host source $i"
        t0=$(now); reconcile "$host" -q; t1=$(now); fresh+=("$(ms "$t0" "$t1")")
        sed -i "s/restart_sec: [0-9]*/restart_sec: $((5 + i))/" "$repo/hosts/$host.yaml"
        commit "$host unit $i"
        t0=$(now); reconcile "$host" -q; t1=$(now); unit+=("$(ms "$t0" "$t1")")
    done
    printf '%-42s %s ms\n' "$2 deploy to healthy, source changed:" "$(printf '%s\n' "${fresh[@]}" | median)"
    printf '%-42s %s ms\n' "$2 deploy to healthy, unit changed:" "$(printf '%s\n' "${unit[@]}" | median)"
}
deploys container container
podman rm --force --ignore plumb-microblog >/dev/null

# The same two kinds of commit for the plain service (the example's own
# unit, its paths under the sandbox root), in the same harness.
plain_http=$(port)
cat >"$repo/templates/bench-config.yaml.j2" <<EOF
listen: 127.0.0.1:$plain_http
database: $root/var/lib/plumb/shared/microblog/microblog.db
content_dir: $root/var/lib/plumb/shared/microblog/content
site_name: MicroBlog
version: "1.0"
EOF
cat >"$repo/hosts/plain.yaml" <<EOF
apps:
  microblog:
    service:
      command: /usr/bin/python3 $root/var/lib/plumb/current/app/microblog/bin/microblog serve --config $root/etc/microblog/config.yaml
      restart_sec: 5
    files:
      - path: /etc/microblog/config.yaml
        template: bench-config.yaml.j2
    health:
      - http: http://127.0.0.1:$plain_http/health
        timeout: 60
EOF
commit plain
deploys plain "plain service"
sh tests/podman/systemctl.sh "$root" stop microblog.service

# 3. Publishing the built site: a local directory, then over ssh.
keys=$work/ssh
mkdir -p "$keys" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$keys/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$keys/client_key"
cp "$keys/client_key.pub" "$keys/authorized_keys"
sshd_port=$(port)
cat >"$keys/sshd_config" <<EOF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $keys/host_key
PidFile $keys/sshd.pid
AuthorizedKeysFile $keys/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
EOF
/usr/sbin/sshd -D -f "$keys/sshd_config" &
sshd_pid=$!
echo "[127.0.0.1]:$sshd_port $(cut -d' ' -f1,2 "$keys/host_key.pub")" >"$keys/known_hosts"
printf 'ssh: {key_file: %s, known_hosts: %s}\nallow_publish: ["%s@127.0.0.1:%s"]\n' \
    "$keys/client_key" "$keys/known_hosts" "$(id -un)" "$work/remote" >>"$work/plumb.yaml"
cat >"$repo/hosts/hybrid.yaml" <<EOF
apps:
  microblog:
    service: null
    health: null
    site:
      server_name: [blog.example.com]
      root: /var/lib/plumb/current/app/microblog/build
      publish:
        - dir: /srv/www/microblog
        - ssh: $(id -un)@127.0.0.1:$work/remote/microblog
          port: $sshd_port
EOF
commit hybrid
reconcile hybrid -q
local=() remote=()
for i in $(seq "$rounds"); do
    echo "/* $i */" >>"$repo/app/static/style.css"
    commit "style $i"
    log=$(reconcile hybrid -v 2>&1)
    local+=("$(echo "$log" | sed -n 's/.*published to \/srv\/www\/microblog in \([0-9.]*\)ms.*/\1/p')")
    remote+=("$(echo "$log" | sed -n 's/.*published to ssh:.* in \([0-9.]*\)ms.*/\1/p')")
done
echo "publish the site, local directory: $(printf '%s\n' "${local[@]}" | median) ms ($(find "$root/srv/www/microblog/current/" -type f | wc -l) files)"
echo "publish the site, over ssh:        $(printf '%s\n' "${remote[@]}" | median) ms"
