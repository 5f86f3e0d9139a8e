"""Safe file writing, checksums and JSON reading, shared by the corpus cache, the
checkpoints, the tokenizers and the conversation files.

It sits below every step of the data flow and imports nothing of the package.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_loads(text: str):
    """``json.loads``, with a text nested too deep for Python's parser (``[[[[...``, which
    raises RecursionError) a ``json.JSONDecodeError`` like any other malformed text, so a
    reader's message for a bad file covers it too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deep", text[:100], 0) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash never leaves half a file under that name.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file
    is renamed over ``path`` (a rename within a folder is atomic). A failed write removes
    its temporary file.
    """
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    try:
        os.chmod(tmp.name, 0o644)  # temporary files are private; these are ordinary files
        os.replace(tmp.name, path)
    except BaseException:  # e.g. path is a folder, or a crash (Ctrl-C) between the two calls
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp.name)
        raise


def fsync_dir(folder: Path) -> None:
    """Make the renames inside ``folder`` durable (not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
