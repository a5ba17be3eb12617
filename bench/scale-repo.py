#!/usr/bin/env python3
"""Generate a deploy repo that manages many files, for bench/scale.sh.

    bench/scale-repo.py DIR FILES [--unrelated-mb N] [--source-mb N]

DIR gets a git repository (branch main, one commit) whose deploy.yaml has
one app, `scale`, with FILES managed files (/etc/scale/f<i>.conf, each
copied from the repo). --unrelated-mb adds N MiB of files the deploy never
references (big/); --source-mb gives the app a source directory of N MiB
(app/, copied into every release). Content is pseudo-random and fixed by
the file's index, so runs are repeatable.
"""

import argparse
import os
import random
import subprocess


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def blob(seed, size):
    return random.Random(seed).randbytes(size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("files", type=int)
    ap.add_argument("--unrelated-mb", type=int, default=0)
    ap.add_argument("--source-mb", type=int, default=0)
    args = ap.parse_args()
    d = args.dir
    lines = ["version: 1", "apps:", "  scale:"]
    if args.source_mb:
        lines.append("    source: app")
        lines.append("    user: nobody")
        for i in range(args.source_mb):
            write(f"{d}/app/data/chunk{i:04}.bin", blob(i, 1 << 20))
    lines.append("    files:")
    for i in range(args.files):
        write(f"{d}/files/f{i}.conf", f"# file {i}\nvalue = {i}\n".encode())
        lines.append(f"      - path: /etc/scale/f{i}.conf")
        lines.append(f"        source: files/f{i}.conf")
    for i in range(args.unrelated_mb):
        write(f"{d}/big/unrelated{i:04}.bin", blob(10_000 + i, 1 << 20))
    write(f"{d}/deploy.yaml", ("\n".join(lines) + "\n").encode())
    # No automatic gc: one detached after the first commit races the clone.
    git = ["git", "-C", d, "-c", "gc.auto=0", "-c", "user.email=bench@example.org", "-c", "user.name=bench"]
    subprocess.run(["git", "init", "-q", "-b", "main", d], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "scale"], check=True)


if __name__ == "__main__":
    main()
