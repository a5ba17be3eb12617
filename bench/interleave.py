#!/usr/bin/env python3
"""Time commands in interleaved rounds: one run of each, in turn.

    bench/interleave.py ROUNDS 'COMMAND' ['COMMAND' ...]

For comparing two builds on an up-to-date run (or anything that leaves the
machine as it found it), e.g.

    A="reconcile --once --repo R --root ROOT --hostname blog1"
    bench/interleave.py 1000 "/tmp/plumb-old $A" "target/release/plumb $A" /bin/true

Each command runs ten times untimed, then ROUNDS times, one run of each
command per round, with its output discarded. Prints the median wall time
and the median CPU time (user + system) of each. This machine's speed
drifts by up to 2x within minutes, so two hyperfine runs one after the other
can differ more than the builds do; here every command sees the same drift.
Listing /bin/true records how busy the machine was.
"""

import os
import shlex
import statistics
import sys
import time


def run(argv, devnull):
    started = time.perf_counter()
    pid = os.posix_spawnp(
        argv[0],
        argv,
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2),
        ],
    )
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{shlex.join(argv)}: exit status {status}")
    return wall, usage.ru_utime + usage.ru_stime


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    commands = [shlex.split(c) for c in sys.argv[2:]]
    devnull = os.open(os.devnull, os.O_WRONLY)
    for _ in range(10):
        for argv in commands:
            run(argv, devnull)
    wall = [[] for _ in commands]
    cpu = [[] for _ in commands]
    for _ in range(rounds):
        for i, argv in enumerate(commands):
            w, c = run(argv, devnull)
            wall[i].append(w * 1e3)
            cpu[i].append(c * 1e3)
    for i, text in enumerate(sys.argv[2:]):
        print(
            f"{statistics.median(wall[i]):8.3f} ms wall {statistics.median(cpu[i]):8.3f} ms CPU  {text}"
        )


if __name__ == "__main__":
    main()
