"""Run a graded notebook in a child process that cannot take the grading machine down.

The child (:mod:`tinyllm.grading.runner` and the notebook's kernel under it) runs

- in its own session and process group, in a fresh working folder that is also its HOME
  and TMPDIR, with a small environment (no variables of the teacher's shell);
- under ``resource`` limits it sets on itself before anything else: data memory
  (a runaway allocation raises ``MemoryError`` in the cell that made it), file size
  (a huge file fails to write), no core files, and a process count where the kernel
  enforces one (``RLIMIT_NPROC`` is not enforced for root);
- when the grader runs as root and the interpreter can run as another user, as a fresh
  unprivileged user id: then ``RLIMIT_NPROC`` applies and the teacher's files are
  read-only to it.

A watchdog in the parent polls ``/proc`` several times a second: the number of processes
the child started, their total memory, the size of the working folder and the time. When
one goes over its limit it kills every process of the child and says which limit it was.
Without containers this protects a machine from accidents and simple abuse, not from a
determined attacker (see book/grading.md for otter's container grading).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GiB, MiB = 1 << 30, 1 << 20


@dataclass
class Limits:
    seconds: float = 240.0  # the whole run, kernel start included
    memory_bytes: int = 3 * GiB  # per process (data) and all processes (proportional resident)
    disk_bytes: int = 512 * MiB  # the working folder (any one file: half of it)
    processes: int = 24  # processes alive at once (threads not counted)
    poll_seconds: float = 0.1


@dataclass
class Outcome:
    returncode: int | None
    log: str
    stopped: str | None  # why the watchdog stopped the run, None if it ended by itself
    peak_rss: int = 0
    peak_processes: int = 0


def apply_limits(limits: dict) -> None:
    """In the child, first thing: set the resource limits, then drop to ``uid`` if given."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Data, not address space: a CUDA build of torch (Colab's) maps gigabytes of libraries.
    resource.setrlimit(resource.RLIMIT_DATA, (limits["memory_bytes"], limits["memory_bytes"]))
    # One file may fill half the folder: a too-big file then fails to write (a note says so)
    # before the whole folder goes over its limit and the run is stopped.
    file_bytes = limits["disk_bytes"] // 2
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    if limits.get("nproc"):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    if limits.get("uid") is not None:
        os.setgroups([])
        os.setgid(limits["gid"])
        os.setuid(limits["uid"])


def prepare(work: Path, kernel_name: str, extra: dict[str, str]) -> dict[str, str]:
    """Make ``work`` the run's home (a kernel spec for this Python in it); return its environment.

    The whole environment of the run: nothing from the teacher's shell but PATH.
    """
    import tinyllm

    package_parent = str(Path(tinyllm.__file__).resolve().parent.parent)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "TMPDIR": str(work / "tmp"),
        "JUPYTER_PATH": str(work / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_CONFIG_DIR": str(work / ".jupyter"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": str(work / ".ipython"),
        "MPLCONFIGDIR": str(work / ".matplotlib"),
        "XDG_CACHE_HOME": str(work / ".cache"),
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": package_parent,  # the same tinyllm as the grader's, installed or not
        "LANG": "C.UTF-8",
        **extra,
    }
    for name in ("runtime", "tmp", "record", ".ipython", ".matplotlib", ".cache"):
        (work / name).mkdir(exist_ok=True)
    kernel = work / "jupyter" / "kernels" / kernel_name
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinyllm grading", "language": "python",
    }), encoding="utf-8")
    return env


def _tasks_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count


_DROP_OK: dict[str, bool] = {}
PROBE_UID = 65534  # "nobody": can an unprivileged user run this Python at all?


def can_drop(python: str) -> bool:
    """Whether ``python`` runs as an unprivileged user (not when it lives in root's 0700 home)."""
    if python not in _DROP_OK:
        try:
            proc = subprocess.run(
                [python, "-c", "import tinyllm.grading.record"], user=PROBE_UID, group=PROBE_UID,
                extra_groups=[], capture_output=True, timeout=120, cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
            _DROP_OK[python] = proc.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _DROP_OK[python] = False
    return _DROP_OK[python]


def child_limits(limits: Limits, python: str, work: Path) -> dict:
    """The limits the child sets on itself (and the user it becomes, when root)."""
    out = {"memory_bytes": limits.memory_bytes, "disk_bytes": limits.disk_bytes}
    # Threads count towards RLIMIT_NPROC: a kernel runs about 20; leave room for them.
    tasks = 16 * limits.processes + 64
    if os.name == "posix" and os.geteuid() == 0:
        # A fresh uid per run: its processes and files are its own, not another run's.
        uid = 0x2_0000 + (os.getpid() * 131 + int(work.stat().st_ino)) % 0x1_0000
        if can_drop(python):
            os.chown(work, uid, uid)
            for path in work.rglob("*"):
                os.chown(path, uid, uid, follow_symlinks=False)
            out.update(uid=uid, gid=uid, nproc=tasks)
    elif os.name == "posix":
        out["nproc"] = _tasks_of_uid(os.getuid()) + tasks
    return out


def _stat(pid: str) -> tuple[int, int, int, int] | None:
    """(parent pid, session id, resident bytes, start time) of a process, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    try:
        return int(fields[1]), int(fields[3]), int(fields[21]) * resource.getpagesize(), int(fields[19])
    except (IndexError, ValueError):
        return None


def _pss(pid: int, rss: int) -> int:
    """Proportional memory of a process: pages shared by forked processes counted once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss


class _Tree:
    """The child's processes: its session, and any descendant that left the session."""

    def __init__(self, root: int):
        self.root = root
        self.known: set[tuple[int, int]] = set()  # (pid, start time): a reused pid is not ours

    def scan(self) -> dict[int, int]:
        """pid -> resident bytes of every process of the child now."""
        stats = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                st = _stat(entry.name)
                if st is not None:
                    stats[int(entry.name)] = st
        members = {}
        changed = True
        while changed:  # follow parents, so a process that called setsid stays ours
            changed = False
            for pid, (ppid, sid, rss, started) in stats.items():
                if pid not in members and (sid == self.root or (pid, started) in self.known or ppid in members):
                    members[pid] = rss
                    changed = True
        self.known |= {(pid, stats[pid][3]) for pid in members}
        return members

    def kill(self) -> None:
        for _ in range(20):
            try:
                os.killpg(self.root, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            members = self.scan()
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if not members:
                return
            time.sleep(0.05)


def folder_size(path: Path, max_entries: int = 20_000) -> tuple[int, int]:
    """(bytes, entries) under ``path``, stopping after ``max_entries`` entries."""
    total = entries = 0
    stack = [str(path)]
    while stack and entries < max_entries:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
        except OSError:
            pass
    return total, entries


def read_file(path: Path, limit: int) -> bytes | None:
    """At most ``limit`` bytes of a regular file the run wrote, never through a symlink.

    The run may replace its files by links to the teacher's files; those are not read.
    """
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(limit)


def run(cmd: list[str], work: Path, env: dict, limits: Limits) -> Outcome:
    """Run ``cmd`` in ``work`` under the watchdog; never raises for what the child does."""
    start = time.monotonic()
    # The parent keeps the log open and reads it back through its own descriptor.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    tree = _Tree(proc.pid)
    stopped = None
    peak_rss = peak_procs = 0
    while True:
        try:
            proc.wait(timeout=limits.poll_seconds)
            break
        except subprocess.TimeoutExpired:
            pass
        members = tree.scan()
        rss = sum(members.values())
        peak_rss, peak_procs = max(peak_rss, rss), max(peak_procs, len(members))
        if len(members) > limits.processes:
            stopped = f"the notebook started more than {limits.processes} processes"
        elif rss > limits.memory_bytes and sum(_pss(p, r) for p, r in members.items()) > limits.memory_bytes:
            # (resident sizes count the pages forked processes share once per process)
            stopped = f"the notebook used more than {limits.memory_bytes / GiB:g} GiB of memory"
        elif time.monotonic() - start > limits.seconds:
            stopped = f"grading stopped after {limits.seconds:g} s: the notebook runs too long"
        else:
            size, entries = folder_size(work)
            if size > limits.disk_bytes:
                stopped = f"the notebook wrote more than {limits.disk_bytes / MiB:g} MiB of files"
            elif entries >= 20_000:
                stopped = "the notebook wrote more than 20,000 files"
        if stopped:
            if not stopped.startswith("grading stopped"):
                stopped = f"grading stopped: {stopped}"
            break
    tree.kill()  # whatever is left: the kernel after a crash, sleeping children
    proc.wait()
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - 20_000))
    text = log.read().decode("utf-8", "replace")
    log.close()
    return Outcome(proc.returncode, text, stopped, peak_rss, peak_procs)
