#!/usr/bin/env bash
# plumb run: push-to-live latency through the webhook, and idle cost.
#
#   bench/daemon.sh            # needs curl and openssl
#
# Starts `plumb run` on a sandbox root with a webhook on a free 127.0.0.1
# port, then N times: commit + push to a local bare remote, send a signed
# webhook, and time until state.json shows the new commit deployed. Then it
# lets the daemon idle and reads its RSS and CPU time from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
plumb="$PWD/target/release/plumb"
runs=${RUNS:-20}
idle=${IDLE:-10}

work=$(mktemp -d)
chmod 755 "$work"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
git init -q -b main "$work/src"
cp -r deploy-repo-example/. "$work/src/"
git -C "$work/src" add -A
git -C "$work/src" -c user.email=b@e.org -c user.name=bench commit -qm example
git clone -q --bare "$work/src" "$work/remote.git"
git -C "$work/src" remote add origin "$work/remote.git"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=bench-secret
echo "$secret" > "$work/secret"
cat > "$work/plumb.yaml" <<CONF
interval: 3600
webhook:
  listen: 127.0.0.1:$port
  secret_file: $work/secret
CONF
"$plumb" run --config "$work/plumb.yaml" --repo "$work/remote.git" --root "$work/root" --hostname blog1 > "$work/daemon.log" 2>&1 &
pid=$!
state="$work/root/var/lib/plumb/state.json"
until grep -q '"deployed"' "$state" 2>/dev/null; do sleep 0.05; done

body='{"ref":"refs/heads/main"}'
sig=$(printf %s "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.* //')
latencies=()
for i in $(seq "$runs"); do
    (cd "$work/src" && echo "$i" > templates/bench-stamp.txt && git add -A && git -c user.email=b@e.org -c user.name=b commit -qm "push $i" && git push -q origin main)
    commit=$(git -C "$work/src" rev-parse HEAD)
    start=$(date +%s%N)
    curl -s -o /dev/null -X POST -H "X-Hub-Signature-256: sha256=$sig" -d "$body" "http://127.0.0.1:$port/hook"
    until grep -q "\"commit\": \"$commit\"" "$state" 2>/dev/null; do sleep 0.002; done
    latencies+=($(( ($(date +%s%N) - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${latencies[@]}" | sort -n)
median=$(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p")
max=$(echo "$sorted" | tail -1)
echo "push to live via webhook over $runs pushes: median ${median} ms, max ${max} ms"

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks)
sleep "$idle"
after=$(ticks)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hz=$(getconf CLK_TCK)
echo "idle daemon: RSS ${rss} KiB; CPU over ${idle} s idle: $(( (after - before) * 1000 / hz )) ms"
