"""scripts/cpu_time.py counts the CPU of every process a command starts, even one that left.

The suite's CPU budget is measured with it; the graded notebooks run in bubblewrap and the
grading processes are forked by a server, so a count of waited-for children (what
``/usr/bin/time`` reports) would miss them. A detached process that burns about a second
must be counted.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "cpu_time.py"
BURN = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end:\n    pass\n"


def test_a_detached_process_is_counted(tmp_path):
    done = tmp_path / "done"
    burner = BURN + f"open({str(done)!r}, 'w').close()\n"
    # The command starts the burner in a session of its own and does not wait for it: it
    # only waits for the file the burner writes when it is done.
    command = ("import subprocess, sys, time, os\n"
               f"subprocess.Popen([sys.executable, '-c', {burner!r}], start_new_session=True)\n"
               f"while not os.path.exists({str(done)!r}):\n    time.sleep(0.05)\n")
    out = subprocess.run([sys.executable, str(SCRIPT), sys.executable, "-c", command],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = re.search(r"CPU of the command and all it started ([\d.]+) s", out.stderr)
    if found is None:
        assert "machine CPU" in out.stderr
        pytest.skip("no cgroup can be made here: the script fell back to the machine's counters")
    assert float(found.group(1)) >= 0.9, out.stderr


def test_the_command_status_is_passed_on():
    out = subprocess.run([sys.executable, str(SCRIPT), sys.executable, "-c", "raise SystemExit(3)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3 and "wall" in out.stderr


def test_each_run_makes_a_cgroup_of_its_own():
    """Two runs in one process (as two runs whose pids came round again) get two groups: a name
    taken by a group left behind made the second fall back to the machine's counters."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import cpu_time
    finally:
        sys.path.remove(str(SCRIPT.parent))
    first = cpu_time.make_cgroup()
    if first is None:
        pytest.skip("no cgroup can be made here")
    try:
        second = cpu_time.make_cgroup()
        assert second is not None and second[0] != first[0], (first, second)
        second[0].rmdir()
    finally:
        first[0].rmdir()
