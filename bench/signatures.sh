#!/usr/bin/env bash
# Signature verification benchmark: a host that was offline while 1 000
# SSH-signed commits landed catches up in one reconcile, which verifies every
# one of them (deployed commit exclusive, head inclusive).
#
#   bench/signatures.sh            # needs hyperfine, ssh-keygen, git
#
# Prints the median of the catch-up reconcile with the signature policy, the
# same reconcile without it, and the difference: the cost of verifying the
# 1 000 signatures (goal: under 100 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
plumb="$PWD/target/release/plumb"
commits=${COMMITS:-1000}
runs=${RUNS:-20}

work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
ssh-keygen -q -t ed25519 -N "" -C bench -f "$work/key"
echo "bench@example.org $(cut -d' ' -f1,2 "$work/key.pub")" > "$work/allowed_signers"
git init -q -b main "$work/src"
cp -r deploy-repo-example/. "$work/src/"
git -C "$work/src" add -A
sign=(-c gpg.format=ssh -c "user.signingkey=$work/key" -c user.email=b@e.org -c user.name=bench)
git -C "$work/src" "${sign[@]}" commit -qS -m base
base=$(git -C "$work/src" rev-parse HEAD)
echo "== making $commits signed commits"
for i in $(seq "$commits"); do
    git -C "$work/src" "${sign[@]}" commit -qS --allow-empty -m "commit $i"
done

printf 'allowed_signers: %s\n' "$work/allowed_signers" > "$work/signed.yaml"
printf 'keep_releases: 5\n' > "$work/plain.yaml"
# Each timed run starts from a copy of a host that deployed the base commit
# (made in place, so its links name the place it is copied back to).
git -C "$work/src" branch -qf base "$base"
for name in signed plain; do
    "$plumb" reconcile --once --repo "$work/src" --branch base --root "$work/$name" \
        --hostname blog1 --config "$work/$name.yaml" > /dev/null
    cp -a "$work/$name" "$work/$name-template"
done
run() {
    local name=$1
    echo "rm -rf $work/$name && cp -a $work/$name-template $work/$name"
}
echo "== catch-up reconcile of $commits commits, with and without the policy ($runs runs)"
hyperfine -N --warmup 2 --runs "$runs" \
    --prepare "bash -c '$(run signed)'" \
    -n signed "$plumb reconcile --once --repo $work/src --branch main --root $work/signed --hostname blog1 --config $work/signed.yaml" \
    --prepare "bash -c '$(run plain)'" \
    -n plain "$plumb reconcile --once --repo $work/src --branch main --root $work/plain --hostname blog1 --config $work/plain.yaml" \
    --export-json "$work/result.json"
python3 - "$work/result.json" "$commits" <<'EOF'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
print(f"summary: catch-up with signatures {r['signed']:.1f} ms, without {r['plain']:.1f} ms; "
      f"verifying {sys.argv[2]} signed commits costs {r['signed'] - r['plain']:.1f} ms")
EOF
