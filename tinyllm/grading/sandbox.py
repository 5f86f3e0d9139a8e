"""Where learner code runs: a bubblewrap sandbox, or (without one) a limited child process.

With ``bwrap`` (Linux; the sandbox Flatpak uses) the notebook's process sees

- a read-only filesystem holding only the Python installation, its site-packages and the
  ``tinyllm`` package folder (not the exercise sources, tests, or the package's copy of
  every set's tests); a fresh, size-limited tmpfs as its working folder and HOME, private
  ``/tmp`` and ``/dev/shm`` (size-limited too, gone with the sandbox);
- its own pid, network, ipc, uts and user namespaces (no network at all), uid 65534 and no
  capabilities (started by root, that uid is root outside: so ``/proc``, ``/dev`` and the
  sandbox's own root are read-only); a seccomp filter on the notebook's process refuses
  ``ptrace`` and the calls that read or write another process's memory (bubblewrap's and
  ``cat`` run as its uid: :func:`tinyllm.grading.warm._forbid_reaching_other_processes`);
  ``--die-with-parent`` and the pid namespace mean
  that nothing it starts (``setsid -f``, double forks) outlives it;
- resource limits: data memory and file size per process, CPU time, process count (the
  count is per user, so it binds only where the grader does not run as root).

The notebook's process does not start there as a fresh ``python``: bubblewrap's command is
``cat`` (:func:`command`), and a process forked from one warm process that imported torch
once enters the sandbox and becomes the notebook's (:mod:`tinyllm.grading.warm`).

A small watchdog (psutil) counts the sandbox's processes, their threads and their memory and
ends it when one goes over its limit: the one bound that also holds for root.

Without bubblewrap (or with ``grade(..., isolate=False)``) the notebook's process is forked
from the grader's (:func:`fork_unsandboxed`) and runs unsandboxed with the limits
alone, and the report says so; :mod:`tinyllm.grade` refuses that for others' notebooks
(``--untrusted``).
"""

from __future__ import annotations

import io
import json
import marshal
import os
import resource
import select
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tinyllm.grading import GRADING_ENV

GiB, MiB = 1 << 30, 1 << 20
# The run's total may exceed the per-process data limit by the libraries it maps (torch):
# so one process hits its own limit (MemoryError where it allocates) before the whole run does.
LIBRARIES_BYTES = 1 * GiB
WORK = "/submission"  # the notebook's working folder, inside the sandbox
REQUIRE_ENV = "TINYLLM_REQUIRE_SANDBOX"  # "1": a missing sandbox is an error (CI)


@dataclass
class Limits:
    seconds: float = 240.0  # running the notebook's cells (all questions' calls: their own limits)
    cell_seconds: float = 30.0  # one cell, or one question's calls of the learner's functions
    memory_bytes: int = 3 * GiB  # per process (data); all processes: this plus LIBRARIES_BYTES
    disk_bytes: int = 512 * MiB  # the working folder; /tmp and /dev/shm get an eighth each
    processes: int = 24  # processes alive at once
    threads: int = 512  # threads of all of them (each takes one of the machine's pids)
    poll_seconds: float = 0.1


NOT_ISOLATED = ("graded without isolation: bubblewrap (bwrap) was not found, so the notebook "
                "ran as your own user (fine for your own work)")
NOT_ISOLATED_AS_ASKED = "graded without isolation, as asked (isolate=False): the notebook ran as your own user"
REFUSED = ("refusing to grade others' notebooks without isolation: install bubblewrap "
           "(Debian/Ubuntu: apt-get install bubblewrap; where it is installed and `bwrap --unshare-all "
           "--ro-bind / / true` fails, the machine forbids user namespaces), or grade in containers with otter "
           "(otter grade ... --containers; see book/grading.md)")


@cache
def bwrap() -> str | None:
    """The ``bwrap`` program if it can make a sandbox here (user namespaces allowed), else None."""
    path = shutil.which("bwrap")
    if path is None or not sys.platform.startswith("linux"):
        return None
    probe = [path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return path if ok else None


@cache
def fresh_python() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the folders a fresh ``python`` of this installation imports from, with its ``.pth``
    lines; its site-packages folders). Not what this process's caller added to ``sys.path``
    nor PYTHONPATH: a test runner's folders, a teacher's script folder beside solutions."""
    code = ("import json, site, sys; print(json.dumps([sys.path[1:],"  # sys.path[0]: the current folder
            " site.getsitepackages() + [site.getusersitepackages()]]))")
    # Without PYTHONPATH: a folder the grader's own shell adds is not the installation's.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    path, sites = json.loads(out.stdout)
    return tuple(path), tuple(sites)


@cache
def known_code() -> bytes:
    """The watch's tables of this installation's code (:func:`tinyllm.grading.fingerprints.known_code`),
    as :mod:`marshal` writes them: made once in the judges' warm process, handed to each sandbox
    (:func:`in_memory`), which reads them before any cell runs instead of making its own."""
    import torch

    import tinyllm
    from tinyllm.grading import watch

    package = str(Path(tinyllm.__file__).resolve().parent) + "/"
    return marshal.dumps(watch.known_code(package, torch.__path__[0] + "/", frozenset(watch.ALLOWED_METHODS)))


def in_memory(data: bytes) -> int:
    """A file descriptor of a file in memory holding ``data``, read from its start."""
    fd = os.memfd_create("data")
    os.write(fd, data), os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _binds_for_python() -> list[str]:
    """The Python installation and the folders it imports from, read-only, at their own
    paths. Never the current folder or one above it (``PYTHONPATH=.``, ``/``); above the
    package only folders of the installation (an installed package's site-packages), not a
    checkout with its sources and tests; no other folder holding a ``tinyllm`` package."""
    path, sites = fresh_python()
    package, here = Path(__file__).resolve().parents[1], Path.cwd().resolve()
    installation = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *sites)]

    def exposes(place: Path) -> bool:
        if here.is_relative_to(place):
            return True
        if package.is_relative_to(place):
            return not any(place.is_relative_to(root) for root in installation)
        return (place / "tinyllm").exists()

    # Each folder at its real path and, reached through a link (a virtual environment linked into a
    # project), at the path Python imports it by too: the notebook's process starts with those paths.
    wanted = [p for p in {sys.base_prefix, sys.prefix, str(Path(sys.executable).parent), *path} if Path(p).is_dir()]
    places = {seen: str(Path(p).resolve()) for p in wanted for seen in {str(Path(p).resolve()), os.path.abspath(p)}}
    places = {seen: real for seen, real in places.items() if not exposes(Path(real)) and not exposes(Path(seen))}
    out: list[str] = []
    for seen in sorted(places, key=len):  # a folder inside one already bound is bound with it, if it lies there
        if not any(seen.startswith(p + "/") and places[seen] == places[p] + seen[len(p):] for p in out[2::3]):
            out += ["--ro-bind", places[seen], seen]
    return out


def command(package_dir: Path, notebook_fd: int, notebook_name: str, limits: Limits, info_fd: int) -> list[str]:
    """The ``bwrap`` command line of a notebook's sandbox. Its command is ``cat``, reading its
    stdin (a pipe the notebook's process holds): the notebook's process enters the sandbox
    (:mod:`tinyllm.grading.warm`), which ends when that process does. bubblewrap writes its
    first process's pid to ``info_fd``; the namespaces are joined from ``cat``'s (:func:`namespaces`)."""
    argv = [bwrap(), "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv", "--info-fd", str(info_fd)]
    for name in ("usr", "bin", "lib", "lib64", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    for name in ("/etc/ld.so.cache", "/etc/localtime", "/etc/ssl", "/etc/fonts", "/etc/matplotlibrc"):
        if Path(name).exists():
            argv += ["--ro-bind", name, name]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    small = str(max(limits.disk_bytes // 8, 8 * MiB))  # first: a Python installed under /tmp is bound over it
    argv += ["--size", small, "--tmpfs", "/tmp", "--size", small, "--tmpfs", "/dev/shm"]
    # Only the package, at its own place (where the warm process imported it from), not the
    # checkout around it; and not every set's tests, wherever the package lies.
    argv += _binds_for_python() + ["--ro-bind", str(package_dir), str(package_dir)]
    if (package_dir / "grading" / "assignments").is_dir():
        argv += ["--tmpfs", str(package_dir / "grading" / "assignments")]
    argv += ["--size", str(limits.disk_bytes), "--tmpfs", WORK,
             "--file", str(notebook_fd), f"{WORK}/{notebook_name}", "--chdir", WORK]
    # Last: bubblewrap's own root and /dev are memory with no size limit, and /proc/sys is
    # the host's kernel settings, which a sandbox started by root could otherwise change.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/proc", "--remount-ro", "/"]
    return argv + ["cat"]


def namespaces(info_fd: int, seconds: float = 30.0) -> list[int]:
    """Fds of the namespaces of the sandbox whose bubblewrap writes to ``info_fd``, in
    :data:`tinyllm.grading.warm.NAMESPACES` order, opened once its command (``cat``) runs:
    by then every namespace and mount is made, and it lives until the notebook's process ends."""
    from tinyllm.grading.warm import NAMESPACES

    deadline = time.monotonic() + seconds
    info = b""
    with open(info_fd, "rb", buffering=0) as stream:
        while not info.rstrip().endswith(b"}"):
            if not select.select([stream], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise RuntimeError("bubblewrap did not start the sandbox")
            if not (chunk := stream.read(1 << 12)):
                raise RuntimeError("bubblewrap could not make the sandbox")
            info += chunk
    first = json.loads(info)["child-pid"]
    while time.monotonic() < deadline:
        try:
            for pid in Path(f"/proc/{first}/task/{first}/children").read_text().split():
                if os.readlink(f"/proc/{pid}/exe").endswith("/cat"):
                    fds = [os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in NAMESPACES]
                    if os.readlink(f"/proc/{pid}/exe").endswith("/cat"):  # still it: the fds are its
                        return fds
                    for fd in fds:
                        os.close(fd)
        except OSError:
            pass
        time.sleep(0.002)
    raise RuntimeError("the sandbox's command did not start")


def environment(home: str, package_parent: str) -> dict[str, str]:
    """The whole environment of the notebook's process: nothing of the grader's shell."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": "/tmp" if home == WORK else home,
        "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.matplotlib",
        "XDG_CACHE_HOME": f"{home}/.cache", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": package_parent, "LANG": "C.UTF-8",
        # Idle OpenMP threads sleep: spinning ones would spend the notebook's CPU limit on nothing.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "OMP_WAIT_POLICY": "PASSIVE", GRADING_ENV: "1",
    }


def rlimits(limits: Limits, cpu_seconds: float):
    """A ``preexec_fn``: the child's resource limits (inherited by bwrap and all it runs)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # Data, not address space: a CUDA build of torch (Colab's) maps gigabytes of libraries.
        resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_bytes, limits.memory_bytes))
        # One file may fill half the folder: a too-big file fails to write, with a note.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.disk_bytes // 2, limits.disk_bytes // 2))
        cpu = int(cpu_seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        if os.geteuid() != 0:  # counted per user: the user's own processes plus the run's
            nproc = len(_own_processes()) + 16 * limits.processes + 64
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        die_with_parent()

    return apply


def fork_unsandboxed(serve_config: dict, work: Path, output: int, limits: Limits, cpu: float) -> Forked:
    """The notebook's process (:mod:`tinyllm.grading.serve`) without a sandbox: forked from the
    judge, which imported torch already (a fresh ``python`` pays 1 to 3 s of CPU for it). It
    could read the judge's memory (the tests, the seed) as it could read the package's files,
    so it is for one's own work only, as every grading without the sandbox is."""
    path = fresh_python()[0]
    pid = os.fork()  # before the judge starts a thread, and before torch ran an op in it
    if pid:
        return Forked(pid)
    try:
        os.setsid()
        rlimits(limits, cpu)()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    become_notebook_process(serve_config, str(work), output, path)


def become_notebook_process(serve_config: dict, work: str, output: int, path) -> None:
    """In a forked process that imported torch already: become the notebook's, as a fresh
    ``python -m tinyllm.grading.serve`` started in ``work`` would be (its output to ``output``,
    its environment, folder and import path), run it and exit; nothing of the grader's open
    but the channel's fds (and the watch's tables)."""
    code = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        low = 3  # nothing of the grader's but the channel: not its pipe to the command
        for fd in sorted([*serve_config["fds"], *([serve_config["tables"]] if serve_config.get("tables") else [])]):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        env = environment(work, str(Path(serve_config["package_dir"]).parent))
        os.environ.clear()
        os.environ.update(env)
        os.chdir(work)
        sys.path[:] = [work, env["PYTHONPATH"], *path]  # as `python -m` there
        # Unbuffered, as PYTHONUNBUFFERED=1 makes a fresh process's: the last words before an
        # os._exit reach the report.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)
        import importlib

        import torch

        importlib.invalidate_caches()  # the folders' listings the forked-from process read are not these
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))  # what a fresh process reads at its start
        from tinyllm.grading import serve

        code = serve.main([json.dumps(serve_config)])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


class Forked:
    """A forked child seen as a ``subprocess.Popen`` (``pid``, ``poll``, ``wait``) by the watchdog."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None
        self._lock = threading.Lock()

    def poll(self, block: bool = False):
        with self._lock:
            if self.returncode is None:
                done, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self):
        return self.poll(block=True)


def _own_processes() -> list[int]:
    import psutil

    uid = os.getuid()
    return [p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]


def _prctl(option: int, value: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import signal

        _prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def adopt_orphans() -> None:
    """Make this process the reaper of its descendants' orphans (so they can be found and ended)."""
    if sys.platform.startswith("linux"):
        _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


class Run:
    """The notebook's started process, a watchdog over it, and why it was stopped (if it was)."""

    def __init__(self, proc: subprocess.Popen, limits: Limits, folder: Path | None = None, notebook=None):
        self.proc = proc
        # The notebook's process when it entered the sandbox (a psutil.Process): not a child of
        # bubblewrap's, but its children's orphans are (the sandbox's first process reaps them).
        self.notebook = notebook
        self.limits = limits
        self.folder = folder  # the working folder of a run without the sandbox: removed at the end
        self.stopped: str | None = None
        self.peak_processes = 0
        self._done = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()

    def _members(self):
        import psutil

        members = []
        for root in (self.proc.pid, self.notebook):
            try:
                root = psutil.Process(root) if isinstance(root, int) else root
                if root is not None and root.is_running():
                    members += [root, *root.children(recursive=True)]
            except psutil.Error:
                pass
        return members

    def _watchdog(self) -> None:
        memory = self.limits.memory_bytes + LIBRARIES_BYTES
        while not self._done.wait(self.limits.poll_seconds):
            members = self._members()
            if not members:
                return
            self.peak_processes = max(self.peak_processes, len(members))
            if len(members) > self.limits.processes:
                self.stop(f"the notebook started more than {self.limits.processes} processes")
            elif _total(members, lambda p: p.num_threads()) > self.limits.threads:
                self.stop(f"the notebook started more than {self.limits.threads} threads")
            # Resident memory; only when over, again with the pages forked processes share counted once.
            elif _total(members, lambda p: p.memory_info().rss) > memory and \
                    _total(members, lambda p: p.memory_full_info().pss) > memory:
                self.stop(f"the notebook's processes used more than {memory / GiB:g} GiB of memory together")

    def stop(self, reason: str | None = None) -> None:
        """End the sandbox and everything in it; the first reason given is kept."""
        import psutil

        if reason and self.stopped is None:
            self.stopped = reason if reason.startswith("grading stopped") else f"grading stopped: {reason}"
        self._done.set()
        for _ in range(20):
            members = self._members()
            for p in members:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError, OSError):
                pass
            if self.proc.poll() is not None and len(members) <= 1:
                break
            time.sleep(0.05)
        self.proc.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _total(members, measure) -> int:
    """``measure`` summed over the processes (one that has just ended counts nothing)."""
    import psutil

    total = 0
    for p in members:
        try:
            total += measure(p)
        except (psutil.Error, AttributeError):
            pass
    return total
