#!/usr/bin/env python3
"""Compare two plumb builds on changed commits, interleaved.

    bench/ab.py OLD_PLUMB NEW_PLUMB FILES [BLOCK] [ROUNDS]

Generates a deploy repo of FILES managed files (bench/scale-repo.py) with a
local bare remote, then deploys one changed file per commit with the two
builds in alternating blocks of BLOCK commits (ROUNDS blocks each, the
order swapped every round) on one sandbox root. Each block starts with one
untimed deploy by its build, so each build finds the state it leaves
itself. Prints the median wall time and the median CPU time (user +
system) of each build. On a noisy machine this says more than two runs of
bench/scale.sh one after the other.
"""

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    old, new, files = sys.argv[1], sys.argv[2], int(sys.argv[3])
    block = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o755)
        src, remote = f"{work}/src", f"{work}/remote.git"
        subprocess.run([sys.executable, f"{HERE}/scale-repo.py", src, str(files)], check=True)
        subprocess.run(["git", "-C", src, "config", "gc.auto", "0"], check=True)
        subprocess.run(["git", "clone", "-q", "--bare", src, remote], check=True)
        subprocess.run(["git", "-C", remote, "config", "receive.autogc", "false"], check=True)
        subprocess.run(["git", "-C", src, "remote", "add", "origin", remote], check=True)
        bump = (
            f"cd {src} && echo $RANDOM >> files/f0.conf && "
            "git -c user.email=b@e.org -c user.name=b commit -qam bump && git push -q origin main"
        )
        builds = {"old": old, "new": new}
        wall = {name: [] for name in builds}
        cpu = {name: [] for name in builds}
        for r in range(rounds):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                cmd = [builds[name], "reconcile", "--once", "--repo", remote,
                       "--root", f"{work}/root", "--hostname", "bench"]
                for i in range(block + 1):
                    subprocess.run(bump, shell=True, executable="/bin/bash", check=True)
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    start = time.perf_counter()
                    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                    elapsed = time.perf_counter() - start
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    if i == 0:
                        continue  # the block's untimed first deploy
                    wall[name].append(elapsed * 1000)
                    cpu[name].append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        for name in builds:
            print(f"{name}: wall median {statistics.median(wall[name]):.1f} ms, "
                  f"CPU median {statistics.median(cpu[name]):.1f} ms ({len(wall[name])} commits)")


if __name__ == "__main__":
    main()
