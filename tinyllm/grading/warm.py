"""The notebook's process, started warm: forked from one process that imported torch once.

A fresh ``python`` in each sandbox spent 1.5 s of CPU on its imports (torch, IPython, the
grader's own modules) before the notebook's first cell. Instead one process started with
``python -m tinyllm.grading.warm`` (a new interpreter: none of the grader's memory, nothing
read but the code it imports) imports them once and, for each notebook, forks a process that
enters the sandbox bubblewrap made for that notebook:

- bubblewrap still makes the whole sandbox (its filesystem, namespaces, user mapping, the
  user namespace in which no other can be made) and keeps it with a ``cat`` reading a pipe
  that only the entering process holds; when that process ends, so does the sandbox, as
  when Python was bubblewrap's own command;
- the forked process joins the sandbox's namespaces (``setns``: the user namespace around it
  first, which owns the rest, then its filesystem, pids, network, ipc, host name, cgroups,
  and last the inner user namespace), drops every capability, sets ``no_new_privs`` and a
  seccomp filter against ``ptrace`` and its kin,
  then forks the notebook's process, the first in the sandbox's pid namespace that runs
  Python (:func:`tinyllm.grading.sandbox.become_notebook_process`).

The warm process holds no fd but its socket to the graders (:func:`connection`) and the
standard three (its starter's stderr, to say why it failed), and ends when the last
grader's end of the socket closes. It never runs a notebook's code: each notebook
runs in a fork, a copy of its memory that nothing of the notebook's can write back.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

# The namespaces joined, in that order: the user namespace bubblewrap made first owns the rest
# (joining it gives the capabilities to join them); the inner one (--disable-userns) comes last.
NAMESPACES = ("mnt", "pid", "net", "ipc", "uts", "cgroup", "user")
NS_GET_PARENT = 0xB702  # ioctl on a user namespace's fd: the one it was made in
_PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4

_lock = threading.Lock()
_server: list = []  # [the warm process (Popen), the socket to it], once started here
_handed: list = []  # the socket a grader's judge was handed by the process that started the warm one


def connection() -> socket.socket:
    """The socket to the warm process: the one this process was handed (:func:`use`), or one
    to a warm process it starts now (once; again if that one ended)."""
    with _lock:
        if _handed:
            return _handed[0]
        if not _server or _server[0].poll() is not None:
            import tinyllm
            from tinyllm.grading import sandbox

            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            parent = str(Path(tinyllm.__file__).resolve().parent.parent)
            # The sandbox's environment: torch's OpenMP reads its own at the import, here.
            env = {**sandbox.environment(sandbox.WORK, parent), "PYTHONSAFEPATH": "1"}
            proc = subprocess.Popen([sys.executable, "-m", "tinyllm.grading.warm", str(theirs.fileno())], cwd="/",
                                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    pass_fds=(theirs.fileno(),), start_new_session=True)
            theirs.close()
            _server[:] = [proc, ours]
        return _server[1]


def use(sock: socket.socket) -> None:
    """Reach the warm process through ``sock`` (a judge is handed its grader's)."""
    with _lock:
        _handed[:] = [sock]


def start_in_sandbox(notebook: bytes, name: str, serve_config: dict, limits, cpu: float, output: int):
    """Start bubblewrap's sandbox for the notebook (``name`` in its working folder), then the
    notebook's process in it, forked from the warm process: (bubblewrap's process, the
    notebook's as a ``psutil.Process``). ``serve_config["fds"]``: the channel's ends it gets."""
    import psutil

    from tinyllm.grading import sandbox

    # Files in memory, not pipes: a pipe holds 64 KiB, and bubblewrap reads it only once started.
    notebook_fd, tables = sandbox.in_memory(notebook), sandbox.in_memory(sandbox.known_code())
    alive_read, alive_write = os.pipe()  # the sandbox's `cat` reads it: it ends when its last holder does
    info_read, info_write = os.pipe()
    argv = sandbox.command(Path(serve_config["package_dir"]), notebook_fd, name, limits, info_write)
    proc = subprocess.Popen(argv, cwd="/", stdin=alive_read, stdout=output, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=sandbox.rlimits(limits, cpu),
                            pass_fds=(notebook_fd, info_write))
    for fd in (notebook_fd, alive_read, info_write):
        os.close(fd)
    request = {"serve": serve_config, "limits": vars(limits), "cpu": cpu, "path": sandbox.fresh_python()[0]}
    try:
        joined = sandbox.namespaces(info_read)
        try:
            pid = enter(joined, request, [output, alive_write, *serve_config["fds"], tables])
        finally:
            for fd in joined:
                os.close(fd)
        return proc, psutil.Process(pid)
    except BaseException:
        proc.kill(), proc.wait()
        raise
    finally:
        os.close(alive_write), os.close(tables)


def enter(namespaces: list[int], request: dict, fds: list[int], seconds: float = 60.0) -> int:
    """Have the warm process fork a notebook's process into the sandbox whose namespaces'
    fds (in :data:`NAMESPACES` order) are given; ``fds``: the output, the end of the pipe
    that keeps the sandbox alive, then the ones ``request["serve"]`` names by position.
    Returns the notebook process's pid."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        with mine:
            socket.send_fds(connection(), [json.dumps(request).encode()], [theirs.fileno(), *namespaces, *fds])
            theirs.close()
            mine.settimeout(seconds)
            reply = mine.recv(1 << 12).decode()
    except OSError as exc:
        raise RuntimeError(f"the warm process did not start the notebook's process: {exc}") from None
    finally:
        theirs.close()
    if not reply.isdigit():
        raise RuntimeError(f"the notebook's process could not enter the sandbox: {reply or 'no reply'}"[:300])
    return int(reply)


def main(fd: int) -> None:
    """The warm process: import once, then fork one process per request, until every grader's
    end of the socket is closed."""
    requests = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the forks are reaped by the kernel
    import torch  # noqa: F401
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401
    from traitlets.config import Config  # noqa: F401

    from tinyllm.grading import libraries, sandbox, serve  # noqa: F401
    libraries.warm_up()  # the watch's table of genuine files, inherited by each notebook's fork
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(requests, 1 << 16, 8 + len(NAMESPACES))
        except OSError:
            return
        if not message:
            return
        if os.fork() == 0:
            _enter_sandbox(json.loads(message), fds, requests.fileno())
        for received in fds:
            os.close(received)


def _enter_sandbox(request: dict, fds: list[int], requests_fd: int) -> None:
    """In the fork: join the sandbox, fork the notebook's process there, say its pid, wait for it."""
    from tinyllm.grading import sandbox

    reply = fds[0]
    try:
        os.close(requests_fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        namespaces, (output, alive, *channel) = fds[1:1 + len(NAMESPACES)], fds[1 + len(NAMESPACES):]
        limits = sandbox.Limits(**request["limits"])
        sandbox.rlimits(limits, request["cpu"])()  # before the joins: a process count reads this host's /proc
        _close_all_but(fds)
        namespaces.insert(0, fcntl.ioctl(namespaces[-1], NS_GET_PARENT))
        libc = ctypes.CDLL(None, use_errno=True)
        for ns in namespaces:
            if libc.setns(ns, 0) != 0:
                raise OSError(ctypes.get_errno(), f"setns: {os.strerror(ctypes.get_errno())}")
            os.close(ns)
        _drop_capabilities()
        _forbid_reaching_other_processes()
        serve_config = {**request["serve"], "fds": channel[:3], "tables": channel[3]}
        pid = os.fork()
        if pid == 0:
            os.close(reply), os.close(alive)
            os.setsid()  # as bubblewrap's --new-session made its command's
            sandbox.die_with_parent()
            _check_capabilities()  # here, in the sandbox's pid namespace, its /proc/self is this process
            sandbox.become_notebook_process(serve_config, sandbox.WORK, output, request["path"])
        os.write(reply, str(pid).encode())
        os.close(reply), os.close(output)
        for fd in channel:
            os.close(fd)
        os.waitpid(pid, 0)
        os._exit(0)
    except BaseException as exc:
        try:
            os.write(reply, f"{type(exc).__name__}: {exc}".encode()[:1000])
        finally:
            os._exit(1)


def _close_all_but(keep: list[int]) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _drop_capabilities() -> None:
    """No capability left, none to get back: bounding and ambient sets emptied, then the
    permitted, effective and inheritable ones (capset), and ``no_new_privs``."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # past the last capability: EINVAL, nothing to drop
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:  # two words of each set, all 0
        raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")


# The calls that reach into another process's memory (ptrace, process_vm_readv/writev, pidfd_getfd,
# process_madvise, perf_event_open), and those that make memory no process maps (memfd_create,
# memfd_secret, shmget: the watchdog counts what processes map, and 24 memfds of 250 MB held 6 GB
# past it), by architecture: (its audit number, the calls' numbers).
# The notebook's uid is the one of bubblewrap's process and of `cat`, which are no more
# protected than that: a notebook that attached to `cat` made it run its answers, where no
# watch follows. Writing to their /proc/PID/mem is stopped by /proc being read-only.
_REACHING = {"x86_64": (0xC000003E, (101, 310, 311, 438, 440, 298, 319, 447, 29)),
             "aarch64": (0xC00000B7, (117, 270, 271, 438, 440, 241, 279, 447, 194)),
             "riscv64": (0xC00000F3, (117, 270, 271, 438, 440, 241, 279, 447, 194))}
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def _forbid_reaching_other_processes() -> None:
    """A seccomp filter (kept by every process the notebook starts): those calls fail with
    EPERM, and so does every call of another architecture's numbering (x86's 32-bit calls
    reach ptrace under another number)."""
    import platform
    import struct

    machine = platform.machine()
    if machine not in _REACHING:
        raise OSError(f"no seccomp filter for this machine's architecture ({machine})")
    arch, numbers = _REACHING[machine]
    load, jump_eq, jump_ge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JGE|K, BPF_RET|K
    allow, refuse = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    program = [(load, 0, 0, 4), (jump_eq, 1, 0, arch), (ret, 0, 0, refuse), (load, 0, 0, 0)]
    if machine == "x86_64":  # the x32 calls: the same numbers plus 0x40000000
        program.append((jump_ge, len(numbers) + 1, 0, 0x40000000))
    program += [(jump_eq, len(numbers) - i, 0, number) for i, number in enumerate(numbers)]
    program += [(ret, 0, 0, allow), (ret, 0, 0, refuse)]
    code = b"".join(struct.pack("HBBI", *step) for step in program)
    buffer = ctypes.create_string_buffer(code)

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(Program(len(program), ctypes.addressof(buffer))),
                  0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"seccomp: {os.strerror(ctypes.get_errno())}")


def _check_capabilities() -> None:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    held = {name: int(fields[name], 16) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    assert not any(held.values()) and fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2", fields


if __name__ == "__main__":
    main(int(sys.argv[1]))
