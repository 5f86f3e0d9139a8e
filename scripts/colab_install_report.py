"""What a notebook's setup cell installs in Colab: packages added or replaced, and MB.

    python scripts/colab_install_report.py                 # the setup cells as committed (HEAD)
    python scripts/colab_install_report.py --ref a8cc317   # the cells as they were at a commit

Needs the package registry (it resolves and downloads wheels); not part of the tests.
Colab is stood in for by an environment that holds, as metadata only, every package of
Colab's published list (tests/data/colab-pip-freeze.txt). pip resolves each cell's
install command against it for Colab's Python 3.13 on x86-64 Linux (``--dry-run
--report``); the wheels it would fetch are then downloaded once to measure their size.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FREEZE = ROOT / "tests" / "data" / "colab-pip-freeze.txt"
# pip >= 24 resolves for another Python and platform in a --dry-run (older pips refuse).
PIP = [sys.executable, "-m", "pip"]
# Colab: Python 3.13 on Ubuntu 22.04 (glibc 2.35), x86-64. pip takes the platform tags
# literally, so every manylinux tag that glibc accepts is listed.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(35, 4, -1)]
PLATFORMS += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
TARGET = ["--python-version", "3.13", "--only-binary=:all:", *(f"--platform={p}" for p in PLATFORMS)]


def colab_standin(folder: Path) -> Path:
    """An environment whose site-packages lists Colab's packages (metadata, no code).

    Colab's own packages are taken to fit together: a stand-in declares no dependencies
    and no extras (extras asked of them are resolved apart, see :func:`report`).
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next((folder / "lib").glob("python3*/site-packages"))
    for line in FREEZE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        name, version = line.split("==")
        info = site / f"{re.sub(r'[-.]+', '_', name)}-{version}.dist-info"
        info.mkdir()
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        (info / "METADATA").write_text(metadata)
        (info / "INSTALLER").write_text("colab-standin\n")
        (info / "RECORD").write_text("")
    return folder / "bin" / "python"


def wheel_at(ref: str, out: Path) -> Path:
    """The tinyllm wheel built from a git commit (built in a copy: the clone stays clean)."""
    source = out / f"src-{ref}"
    source.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    tarfile.open(fileobj=BytesIO(archive)).extractall(source, filter="data")
    dist = out / f"dist-{ref}"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(source)],
        check=True,
    )
    return next(dist.glob("tinyllm-*.whl"))


def setup_cell_args(ref: str, kind: str) -> list[str]:
    """The arguments after ``pip install`` in the setup cell of ``kind`` at ``ref``."""
    if ref == "HEAD":
        sys.path.insert(0, str(ROOT))
        from teaching.course import colab_setup_source

        source = colab_setup_source(kind)
    else:
        notebooks = {"chapter": "chapters/02_bigram_model.ipynb", "exercise": "exercises/09_sampling.ipynb"}
        notebook = notebooks[kind]
        nb = json.loads(subprocess.run(["git", "show", f"{ref}:{notebook}"], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout)
        source = next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return [a for a in run_in_fake_colab(source) if a != "-q"]


def run_in_fake_colab(source: str) -> list[str]:
    """Run a setup cell as if in Colab, with pip replaced by a recorder; return pip's arguments."""
    calls = []
    fake_subprocess = type(sys)("subprocess")
    fake_subprocess.run = lambda args, **kwargs: calls.append(list(args))
    saved = {name: sys.modules.get(name) for name in ("subprocess", "google.colab")}
    sys.modules["subprocess"], sys.modules["google.colab"] = fake_subprocess, type(sys)("google.colab")
    try:
        exec(compile(source, "setup-cell", "exec"), {})
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    (args,) = calls
    return args[args.index("install") + 1:]


def report(ref: str, kind: str, work: Path, standin: Path) -> dict:
    built = list((work / f"dist-{ref}").glob("tinyllm-*.whl"))
    wheel = built[0] if built else wheel_at(ref, work)
    args = []
    for a in setup_cell_args(ref, kind):
        if a.startswith("tinyllm"):
            extra = a.split(" @ ")[0][len("tinyllm"):]
            a = f"tinyllm{extra} @ {wheel.as_uri()}"
        args.append(a)
    installs = resolve(args, work / f"report-{ref}-{kind}.json", standin)
    colab = {}
    for line in FREEZE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            colab[re.sub(r"[-_.]+", "-", name.lower())] = version
    rows, urls = [], []
    for item in installs:
        name = re.sub(r"[-_.]+", "-", item["metadata"]["name"].lower())
        version = item["metadata"]["version"]
        url = item["download_info"]["url"]
        rows.append({"name": name, "version": version, "colab": colab.get(name), "url": url})
        if name != "tinyllm":
            urls.append(url)
    sizes = download_sizes(urls, work / "wheels")
    for row in rows:
        row["bytes"] = sizes.get(row["url"], 0)
    return {"command": "pip install " + shlex.join(args), "rows": rows}


def resolve(args: list[str], out: Path, standin: Path) -> list[dict]:
    """What ``pip install ARGS`` would install in the stand-in (pip's report entries).

    An extra asked of one of Colab's packages (otter-grader asks for ``nbconvert[webpdf]``)
    is unknown to its bare stand-in, and pip says so; the extra's own requirements, read
    from this environment's copy of that package, are then resolved in a second pass.
    """
    run = subprocess.run(
        [*PIP, "--python", str(standin), "install", "--dry-run", "--quiet", "--report", str(out),
         *TARGET, *args],
        check=True, capture_output=True, text=True,
    )
    installs = json.loads(out.read_text())["install"]
    extras = re.findall(r"WARNING: (\S+) [\w.+]+ does not provide the extra '([\w-]+)'", run.stderr)
    wanted = []
    for name, extra in extras:
        dist = importlib.metadata.distribution(name)
        for req in dist.requires or []:
            requirement, _, marker = req.partition(";")
            if re.search(rf"extra\s*==\s*[\"']{re.escape(extra)}[\"']", marker):
                wanted.append(requirement.strip())
    if wanted:
        print(f"  (extras of Colab's packages resolved apart: {extras} -> {wanted})")
        second = out.with_suffix(".extras.json")
        subprocess.run(
            [*PIP, "--python", str(standin), "install", "--dry-run", "--quiet", "--report", str(second),
             *TARGET, *wanted],
            check=True, capture_output=True, text=True,
        )
        known = {i["metadata"]["name"].lower() for i in installs}
        installs += [i for i in json.loads(second.read_text())["install"]
                     if i["metadata"]["name"].lower() not in known]
    return installs


def download_sizes(urls: list[str], folder: Path) -> dict[str, int]:
    folder.mkdir(exist_ok=True)
    sizes = {}
    for url in urls:
        name = url.rsplit("/", 1)[-1].split("#")[0]
        path = folder / name
        if not path.exists():
            subprocess.run([*PIP, "download", "--quiet", "--no-deps", *TARGET,
                            "-d", str(folder), url], check=True)
        sizes[url] = path.stat().st_size
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="HEAD", help="the commit whose setup cells and pyproject to measure")
    parser.add_argument("--work", type=Path, help="a folder to keep the wheels in (default: temporary)")
    parser.add_argument("--pip-python", help="a Python whose pip (>= 24) resolves (default: this one)")
    args = parser.parse_args(argv)
    if args.pip_python:
        PIP[0] = args.pip_python
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        standin = work / "colab-standin" / "bin" / "python"
        if not standin.exists():
            colab_standin(work / "colab-standin")
        for kind in ("chapter", "exercise"):
            result = report(args.ref, kind, work, standin)
            rows = result["rows"]
            total = sum(r["bytes"] for r in rows)
            replaced = [r for r in rows if r["colab"] is not None]
            print(f"\n{kind} setup cell ({args.ref}): {result['command']}")
            print(f"  {len(rows)} packages to install, {total / 1e6:.1f} MB to download; "
                  f"{len(replaced)} of Colab's packages replaced")
            for r in sorted(rows, key=lambda r: -r["bytes"]):
                change = f"replaces Colab's {r['colab']}" if r["colab"] else "new"
                print(f"  {r['name']:28} {r['version']:14} {r['bytes'] / 1e6:7.2f} MB  {change}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
