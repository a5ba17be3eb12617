#!/usr/bin/env bash
# Scale benchmark: cost as the deploy repo and the host grow.
#
#   bench/scale.sh                        # the release build (built first)
#   PLUMB=/path/to/plumb bench/scale.sh   # another build, for before/after
#   CASES="files mirror fetch" bench/scale.sh   # a subset
#
# Needs hyperfine, GNU time (/usr/bin/time), python3 and git. Prints, on a
# sandbox root with a local bare remote:
#   files   10 / 100 / 1 000 / 10 000 managed files: median up-to-date run,
#           median run of a commit changing one file, its peak RSS;
#   big     200 MiB of files the deploy never references, and an app
#           source of 200 MiB: the same three figures;
#   mirror  the example after 1 000 deploys vs on a fresh mirror;
#   fetch   the first fetch of a repo with 200 MiB of history from a local
#           path, vs `git clone --bare --no-local`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PLUMB:-}" ]; then
    cargo build --release --quiet
    PLUMB=$PWD/target/release/plumb
fi
cases=${CASES:-files big mirror fetch}
work=$(mktemp -d)
chmod 755 "$work"
# On a host /run is a tmpfs, and the up-to-date check's index lives there:
# each sandbox's run/ is one too (under /dev/shm).
shm=$(mktemp -d /dev/shm/plumb-bench.XXXXXX)
trap 'rm -rf "$work" "$shm"' EXIT

ms() { python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1000))' "$1"; }
git_in() { git -C "$1" -c user.email=bench@example.org -c user.name=bench "${@:2}"; }

# A deploy repo in $1/src, pushed to $1/remote.git; sets $reconcile.
setup() {
    # No automatic gc on either side: one detached after a commit or a push
    # races the clone and the fetches being measured.
    git -C "$1/src" config gc.auto 0
    git clone -q --bare "$1/src" "$1/remote.git"
    git -C "$1/remote.git" config receive.autogc false
    git -C "$1/src" remote add origin "$1/remote.git"
    mkdir -p "$1/root" "$shm/${1##*/}"
    ln -s "$shm/${1##*/}" "$1/root/run"
    reconcile="$PLUMB reconcile --once --repo $1/remote.git --root $1/root --hostname bench"
}

# Median up-to-date run, median changed run, peak RSS of a changed run.
measure() {
    local dir=$1 runs=$2 change=$3
    $reconcile >/dev/null
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$dir/noop.json" "$reconcile" >/dev/null
    local bump="cd $dir/src && $change && git -c user.email=b@e.org -c user.name=b commit -qam bump && git push -q origin main"
    # Six deploys first: a host in its steady state holds keep_releases (5)
    # old releases, and each deploy writes into the one it prunes.
    hyperfine -N --warmup 6 --runs "$runs" --prepare "bash -c '$bump'" \
        --export-json "$dir/changed.json" "$reconcile" >/dev/null
    local rss=0 kb
    for _ in 1 2 3; do
        bash -c "$bump"
        kb=$(/usr/bin/time -f %M $reconcile 2>&1 >/dev/null | tail -1)
        [ "$kb" -gt "$rss" ] && rss=$kb
    done
    printf '%-28s %10s ms %12s ms %10s MiB\n' "$4" "$(ms "$dir/noop.json")" "$(ms "$dir/changed.json")" "$((rss / 1024))"
}

header() { printf '%-28s %13s %15s %14s\n' "$1" "up to date" "changed commit" "changed RSS"; }

if [[ $cases == *files* ]]; then
    header "managed files"
    for n in 10 100 1000 10000; do
        dir=$work/files-$n
        python3 bench/scale-repo.py "$dir/src" "$n"
        setup "$dir"
        runs=$([ "$n" -ge 10000 ] && echo 5 || echo 20)
        measure "$dir" "$runs" 'echo $RANDOM >> files/f0.conf' "$n"
    done
fi

if [[ $cases == *big* ]]; then
    header "200 MiB in the repo"
    dir=$work/unrelated
    python3 bench/scale-repo.py "$dir/src" 10 --unrelated-mb 200
    setup "$dir"
    measure "$dir" 10 'echo $RANDOM >> files/f0.conf' "unrelated files"
    dir=$work/source
    python3 bench/scale-repo.py "$dir/src" 10 --source-mb 200
    setup "$dir"
    measure "$dir" 10 'echo $RANDOM >> files/f0.conf' "app source (config change)"
fi

if [[ $cases == *mirror* ]]; then
    header "example, mirror history"
    dir=$work/fresh
    mkdir -p "$dir/src" && cp -r deploy-repo-example/. "$dir/src/"
    git -C "$dir/src" init -q -b main && git_in "$dir/src" add -A && git_in "$dir/src" commit -qm example
    setup "$dir"
    old=$work/old
    mkdir -p "$old/src" && cp -r deploy-repo-example/. "$old/src/"
    git -C "$old/src" init -q -b main && git_in "$old/src" add -A && git_in "$old/src" commit -qm example
    setup "$old"
    for i in $(seq 1000); do
        sed -i "s/^  app_version: .*/  app_version: \"$i\"/" "$old/src/deploy.yaml"
        git_in "$old/src" commit -qam "deploy $i" && git -C "$old/src" push -q origin main
        $reconcile >/dev/null 2>&1
    done
    echo "mirror after 1000 deploys: $(find "$old/root/var/lib/plumb/repo.git/objects/pack" -name '*.pack' | wc -l) pack(s)"
    change="sed -i \"s/^  app_version: .*/  app_version: \\\"\$RANDOM\\\"/\" deploy.yaml"
    measure "$old" 20 "$change" "after 1000 deploys"
    reconcile="$PLUMB reconcile --once --repo $dir/remote.git --root $dir/root --hostname bench"
    measure "$dir" 20 "$change" "fresh mirror"
fi

if [[ $cases == *fetch* ]]; then
    dir=$work/history
    python3 bench/scale-repo.py "$dir/src" 1
    mkdir -p "$dir/src/big"
    for i in $(seq 20); do
        python3 -c "import random,sys; sys.stdout.buffer.write(random.Random($i).randbytes(10 << 20))" > "$dir/src/big/h$i.bin"
        git_in "$dir/src" add -A && git_in "$dir/src" commit -qm "history $i"
        rm "$dir/src/big/h$i.bin" && git_in "$dir/src" commit -qam "drop $i"
    done
    echo "first fetch of 200 MiB of history from a local path:"
    hyperfine -N --runs 3 --prepare "rm -rf $dir/root $dir/clone.git" \
        --export-json "$dir/plumb.json" "$PLUMB reconcile --once --repo $dir/src --root $dir/root --hostname bench" >/dev/null
    hyperfine -N --runs 3 --prepare "rm -rf $dir/root $dir/clone.git" \
        --export-json "$dir/git.json" "git clone -q --bare --no-local $dir/src $dir/clone.git" >/dev/null
    kb=$(rm -rf "$dir/root"; /usr/bin/time -f %M $PLUMB reconcile --once --repo "$dir/src" --root "$dir/root" --hostname bench 2>&1 >/dev/null | tail -1)
    printf '  plumb (fetch and deploy) %8s ms, peak RSS %s MiB\n  git clone --bare --no-local %5s ms\n' \
        "$(ms "$dir/plumb.json")" "$((kb / 1024))" "$(ms "$dir/git.json")"
fi
