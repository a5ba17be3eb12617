#!/usr/bin/env bash
# plumb vs ansible-pull on the MicroBlog example, side by side.
#
#   bench/ansible.sh              # needs hyperfine, ansible-core (apt-get install ansible-core)
#
# The ansible side is a deploy repo whose playbook (bench/ansible/local.yml)
# writes the same 7 files plumb renders for host blog1 (`plumb render`
# output, copied as they are: ansible does no templating here, which is in
# its favour, and gathers no facts). Both pull from a local bare remote into
# a sandbox root. Prints the median of an up-to-date run and of a run after a
# commit that changes one file, for each tool. RUNS (default 5) runs each.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ansible-pull >/dev/null || { echo "ansible-pull not found: apt-get install ansible-core" >&2; exit 2; }
if [ -z "${PLUMB:-}" ]; then
    cargo build --release --quiet
    PLUMB=$PWD/target/release/plumb
fi
runs=${RUNS:-5}
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
ms() { python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1000))' "$1"; }
commit() { git -C "$1" -c user.email=bench@example.org -c user.name=bench commit -qam "$2" && git -C "$1" push -q origin main; }
repo() { # $1: a directory holding a work tree to turn into src + remote.git
    git -C "$1/src" init -q -b main
    git -C "$1/src" config gc.auto 0
    git -C "$1/src" add -A
    git -C "$1/src" -c user.email=bench@example.org -c user.name=bench commit -qm initial
    git clone -q --bare "$1/src" "$1/remote.git"
    git -C "$1/remote.git" config receive.autogc false
    git -C "$1/src" remote add origin "$1/remote.git"
}

# plumb: the example deploy repo.
mkdir -p "$work/plumb/src"
cp -r deploy-repo-example/. "$work/plumb/src/"
repo "$work/plumb"
plumb="$PLUMB reconcile --once --repo $work/plumb/remote.git --root $work/plumb/root --hostname blog1"

# ansible: the same 7 files, rendered by plumb, and a playbook that copies them.
mkdir -p "$work/ansible/src"
$PLUMB render --out "$work/ansible/src/files" --hostname blog1 --root "$work/render" deploy-repo-example >/dev/null 2>&1
cp bench/ansible/local.yml "$work/ansible/src/"
repo "$work/ansible"
count=$(find "$work/ansible/src/files" -type f | wc -l)
ansible="ansible-pull -U file://$work/ansible/remote.git -C main -d $work/ansible/checkout -i localhost, -e root=$work/ansible/root local.yml"
export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False
export ANSIBLE_HOME=$work/ansible/home

$plumb >/dev/null 2>&1
$ansible >/dev/null
[ "$(find "$work/ansible/root" -type f | wc -l)" = "$count" ] || { echo "ansible wrote $(find "$work/ansible/root" -type f | wc -l) files, not $count" >&2; exit 1; }

hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/plumb-noop.json" "$plumb" >/dev/null
hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/ansible-noop.json" "$ansible" >/dev/null
bump_plumb="bash -c 'cd $work/plumb/src && sed -i \"s/^  app_version: .*/  app_version: \\\"\$RANDOM\\\"/\" deploy.yaml && git -c user.email=b@e.org -c user.name=b commit -qam bump && git push -q origin main'"
bump_ansible="bash -c 'cd $work/ansible/src && echo \"# \$RANDOM\" >> files/etc/microblog/config.yaml && git -c user.email=b@e.org -c user.name=b commit -qam bump && git push -q origin main'"
hyperfine -N --runs "$runs" --prepare "$bump_plumb" --export-json "$work/plumb-changed.json" "$plumb" >/dev/null
hyperfine -N --runs "$runs" --prepare "$bump_ansible" --export-json "$work/ansible-changed.json" "$ansible" >/dev/null

printf '%-14s %12s %16s\n' "" "up to date" "changed commit"
printf '%-14s %9s ms %13s ms\n' plumb "$(ms "$work/plumb-noop.json")" "$(ms "$work/plumb-changed.json")"
printf '%-14s %9s ms %13s ms\n' ansible-pull "$(ms "$work/ansible-noop.json")" "$(ms "$work/ansible-changed.json")"
echo "($count managed files; $(ansible --version | head -1))"
