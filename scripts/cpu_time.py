"""Wall time and CPU time of a command and of everything it starts, sandboxes included.

    python3 scripts/cpu_time.py make test

``/usr/bin/time`` counts only the children a process waited for; the notebooks graded in
bubblewrap and the processes forked by the grader's warm process escape it. Here the
command runs in its own cgroup (cgroup v1 ``cpuacct`` or v2 ``cpu.stat``, where this user
may create one), which counts every process it starts however it was started, up to the
moment the command ends (``make test`` ends after all it started). Where no
cgroup can be made, the machine's own CPU counters (``/proc/stat``) are read before and
after: then the figure includes whatever else ran, so run it on an idle machine.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

V1 = Path("/sys/fs/cgroup/cpuacct")
V2 = Path("/sys/fs/cgroup")


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores) since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def make_cgroup() -> tuple[Path, str] | None:
    """A fresh cgroup to run in, and how to read it (``v1`` or ``v2``), or None."""
    # A name of its own: a group left behind (a process of its command still alive at the end)
    # keeps its name, and a later run whose pid came round again fell back to the machine's counters.
    name = f"cpu_time_{os.getpid()}_{secrets.token_hex(4)}"
    for root, kind in ((V1, "v1"), (V2, "v2")):
        marker = root / ("cpuacct.usage" if kind == "v1" else "cgroup.controllers")
        if not marker.exists():
            continue
        try:
            (root / name).mkdir()
            return root / name, kind
        except OSError:
            continue
    return None


def cgroup_cpu_seconds(group: Path, kind: str) -> float:
    if kind == "v1":
        return int((group / "cpuacct.usage").read_text()) / 1e9
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return int(stat["usage_usec"]) / 1e6


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    group = make_cgroup()
    machine_before, start = machine_cpu_seconds(), time.monotonic()
    load_before = os.getloadavg()[0]

    def enter() -> None:  # in the child, before exec: it and all it starts count here
        (group[0] / "cgroup.procs").write_text(str(os.getpid()))

    status = subprocess.call(argv, preexec_fn=enter if group else None)
    wall = time.monotonic() - start
    machine = machine_cpu_seconds() - machine_before
    lines = [f"wall {wall:.1f} s ({wall / 60:.1f} min)",
             f"machine CPU {machine:.1f} s ({machine / 60:.1f} min, every process on the machine)"]
    if group:
        cpu = cgroup_cpu_seconds(*group)
        what = f"{cpu:.1f} s ({cpu / 60:.1f} min, cgroup {group[1]})"
        lines.insert(1, f"CPU of the command and all it started {what}")
        for _ in range(50):  # a detached process of the command may take a moment to end
            try:
                group[0].rmdir()
                break
            except OSError:
                time.sleep(0.1)
    lines.append(f"{os.cpu_count()} cores; load average {load_before:.2f} before")
    print("cpu_time: " + "; ".join(lines), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
