#!/usr/bin/env bash
# Real-systemd benchmark: the MicroBlog example in a container booted with
# systemd-nspawn (the root from tests/nspawn/rootfs.sh), the release build.
#
#   bench/systemd.sh      # as root; needs mmdebstrap and systemd-container
#
# Measures, inside the container:
#   1. push to live through plumb.timer (firing every second here, every
#      five minutes as shipped): from the commit to the new version answering;
#   2. push to live through plumb-daemon.service and a signed webhook;
#   3. rollback recovery: from plumb's "health check failed" to the previous
#      release answering again, for a release that crashes at start.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
cargo build --release --quiet
tests/nspawn/rootfs.sh target/nspawn

work=$(mktemp -d)
chmod 755 "$work"
name=plumb-bench-$$
cleanup() {
    [ -n "${init:-}" ] && kill -KILL "$init" 2>/dev/null || true
    wait 2>/dev/null || true
    for h in /sys/fs/cgroup/*/"$name"; do
        [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

repo=$work/repo
git init -q -b main "$repo"
cp -r deploy-repo-example/. "$repo/"
commit() { git -C "$repo" add -A && git -C "$repo" -c user.email=b@e.org -c user.name=bench commit -qm "$1"; }
version() { sed -i "s/^  app_version: .*/  app_version: \"$1\"/" "$repo/deploy.yaml" && commit "$1"; }
commit example

sh -c 'for h in /sys/fs/cgroup/*; do [ -d "$h" ] && mkdir -p "$h/$0" && echo $$ > "$h/$0/cgroup.procs"; done 2>/dev/null
       exec systemd-nspawn -q -D target/nspawn/rootfs -b --register=no --keep-unit --private-network \
         --volatile=overlay --console=pipe --machine="$0" \
         --bind-ro="$PWD/target/release/plumb:/usr/local/bin/plumb" --bind="$1:/srv/repo" \
         --bind-ro="$PWD/systemd:/srv/units" --bind-ro="$PWD/tests/fixtures:/srv/fixtures"' \
    "$name" "$repo" </dev/null >/dev/null 2>&1 &
nspawn=$!
for _ in $(seq 500); do
    for child in $(cat /proc/$nspawn/task/$nspawn/children 2>/dev/null); do
        grep -qP '^NSpid:\t\d+\t1$' /proc/"$child"/status 2>/dev/null && init=$child
    done
    [ -n "${init:-}" ] && break
    sleep 0.02
done
inside() { nsenter -t "$init" -a -- sh -c "$1"; }
until [ "$(inside 'systemctl is-system-running --wait' 2>/dev/null)" = running ]; do sleep 0.05; done

inside 'd=/etc/letsencrypt/live/blog.example.com && mkdir -p $d &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=blog.example.com -keyout $d/privkey.pem -out $d/fullchain.pem 2>/dev/null &&
    install -d -m 0700 /etc/plumb && install -m 0600 /srv/fixtures/example-age.key /etc/plumb/age.key &&
    echo s3cret > /etc/plumb/webhook.secret && chmod 600 /etc/plumb/webhook.secret &&
    printf "repo: /srv/repo\nhostname: blog1\nage_identity: /etc/plumb/age.key\ninterval: 3600\nwebhook:\n  listen: 127.0.0.1:9280\n  secret_file: /etc/plumb/webhook.secret\n" > /etc/plumb/plumb.yaml &&
    chmod 600 /etc/plumb/plumb.yaml && cp /srv/units/* /etc/systemd/system/ &&
    mkdir -p /etc/systemd/system/plumb.timer.d &&
    printf "[Timer]\nOnBootSec=\nOnCalendar=\nOnCalendar=*:*:*\nRandomizedDelaySec=0\nAccuracySec=10ms\n" > /etc/systemd/system/plumb.timer.d/bench.conf &&
    systemctl daemon-reload && systemctl start plumb.service'

# Milliseconds until /health answers "ok $1", polled every 10 ms from inside.
live_ms() {
    inside "s=\$(date +%s%N); until [ \"\$(curl -s --max-time 1 http://127.0.0.1:8000/health)\" = 'ok $1' ]; do sleep 0.01; done
        echo \$(( (\$(date +%s%N) - s) / 1000000 ))"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== push to live through plumb.timer (fires every second; $rounds rounds)"
inside 'systemctl start plumb.timer'
for i in $(seq "$rounds"); do
    version "timer.$i"
    live_ms "timer.$i"
done | tee "$work/timer" | tr '\n' ' '
echo "ms; median $(median <"$work/timer") ms (of which up to 1000 ms waiting for the timer)"
inside 'systemctl stop plumb.timer; while [ "$(systemctl show -p ActiveState --value plumb.service)" != inactive ]; do sleep 0.05; done'

echo "== push to live through plumb-daemon.service and a signed webhook ($rounds rounds)"
inside 'systemctl start plumb-daemon.service'
live_ms "timer.$rounds" >/dev/null
for i in $(seq "$rounds"); do
    version "hook.$i"
    inside "body='{\"ref\":\"refs/heads/main\"}'
        sig=\$(printf %s \"\$body\" | openssl dgst -sha256 -hmac s3cret -r | cut -d' ' -f1)
        curl -s -o /dev/null -X POST -H \"X-Hub-Signature-256: sha256=\$sig\" --data \"\$body\" http://127.0.0.1:9280/"
    live_ms "hook.$i"
done | tee "$work/hook" | tr '\n' ' '
echo "ms; median $(median <"$work/hook") ms"
inside 'systemctl stop plumb-daemon.service'

echo "== rollback recovery: health check failed -> previous release answering ($rounds rounds)"
sed -i 's/timeout: 30/timeout: 3/' "$repo/deploy.yaml" && commit "short health check"
inside 'systemd-run --wait --quiet /usr/local/bin/plumb reconcile --once' >/dev/null
for i in $(seq "$rounds"); do
    version "good.$i"
    inside 'systemd-run --wait --quiet /usr/local/bin/plumb reconcile --once'
    sed -i 's|serve --config /etc/microblog/config.yaml|serve --config /etc/microblog/missing.yaml|' "$repo/deploy.yaml"
    commit "crashes at start $i"
    # A poller logs every answer of /health with its time; plumb logs to the journal.
    inside "(while :; do echo \$(date +%s%N) \$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 http://127.0.0.1:8000/health); sleep 0.005; done) > /tmp/poll 2>&1 &
        echo \$! > /tmp/poller
        systemd-run --wait --quiet --unit=bench-rollback-$i /usr/local/bin/plumb reconcile --once || true
        kill \$(cat /tmp/poller)
        failed=\$(journalctl -o short-unix -u bench-rollback-$i | grep -m1 'FAILED: health check' | cut -d' ' -f1 | tr -d .)
        failed_ns=\$((failed * 1000))
        back=\$(awk -v t=\$failed_ns '\$1 > t && \$2 == 200 {print \$1; exit}' /tmp/poll)
        echo \$(( (back - failed_ns) / 1000000 ))"
    sed -i 's|missing.yaml|config.yaml|' "$repo/deploy.yaml"
done | tee "$work/rollback" | tr '\n' ' '
echo "ms; median $(median <"$work/rollback") ms"
