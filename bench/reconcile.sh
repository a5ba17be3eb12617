#!/usr/bin/env bash
# Reconcile benchmark on the MicroBlog example with a local bare remote.
#
#   bench/reconcile.sh            # needs hyperfine and GNU time (apt-get install hyperfine time)
#
# Measures, on a sandbox root:
#   1. an up-to-date reconcile (fetch, compare, check owned links): median wall time and peak RSS;
#   2. a reconcile of a changed commit (fetch, render, release, switch): median wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
plumb="$PWD/target/release/plumb"
runs=${RUNS:-100}

work=$(mktemp -d)
chmod 755 "$work"   # app builds run as an unprivileged user, who must reach the release
# On a host /run is a tmpfs, and the up-to-date check's index lives there:
# so is the sandbox's run/ (under /dev/shm).
shm=$(mktemp -d /dev/shm/plumb-bench.XXXXXX)
trap 'rm -rf "$work" "$shm"' EXIT
mkdir -p "$work/root"
ln -s "$shm" "$work/root/run"
git init -q -b main "$work/src"
cp -r deploy-repo-example/. "$work/src/"
git -C "$work/src" add -A
git -C "$work/src" -c user.email=bench@example.org -c user.name=bench commit -qm example
git clone -q --bare "$work/src" "$work/remote.git"
git -C "$work/src" remote add origin "$work/remote.git"

reconcile="$plumb reconcile --once --repo $work/remote.git --root $work/root --hostname blog1"
$reconcile >/dev/null

echo "== up-to-date reconcile ($runs runs)"
hyperfine -N --warmup 10 --runs "$runs" --export-json "$work/uptodate.json" "$reconcile"
rss=0
for _ in 1 2 3 4 5; do
    kb=$(/usr/bin/time -f %M $reconcile 2>&1 >/dev/null | tail -1)
    [ "$kb" -gt "$rss" ] && rss=$kb
done
echo "peak RSS over 5 runs: ${rss} KiB"

# Each timed run deploys a new commit: --prepare (not timed) commits and pushes.
bump="cd $work/src && date +%s%N > templates/bench-stamp.txt && sed -i \"s/^  app_version: .*/  app_version: \\\"\$(date +%s%N)\\\"/\" deploy.yaml && git add -A && git -c user.email=b@e.org -c user.name=b commit -qm bump && git push -q origin main"
echo "== changed-commit reconcile ($runs runs)"
hyperfine -N --warmup 6 --runs "$runs" --prepare "bash -c '$bump'" --export-json "$work/changed.json" "$reconcile"

median() { python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['results'][0]['median']*1000, 2))" "$1"; }
echo
echo "summary: up-to-date median $(median "$work/uptodate.json") ms, peak RSS $((rss / 1024)).$(((rss % 1024) * 10 / 1024)) MiB; changed-commit median $(median "$work/changed.json") ms"
