"""Atomic writes: a reader never sees a half-written file or folder."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("sft")


def write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path, "tmp"), dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result is as `open` would leave it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, value: Any) -> None:
    """`value` as JSON; NaN and infinities are refused, never written (they are not JSON)."""
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def is_nonempty_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and any(path.iterdir())


@contextlib.contextmanager
def atomic_dir(out: str | Path, replace: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name beside `out`, then rename it into place.

    A crash leaves `out` as it was, and the temporary folder carries the host
    and process id, so the next build removes what a dead process left. An
    existing `out` is swapped out only when `replace` is set, and only once the
    new folder is complete.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(out, "tmp"), dir=out.parent))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a serving account must read an export
        yield tmp
        if out.exists() and replace:
            replace_dir(out, tmp)
        else:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(out: Path, new: Path | None = None) -> None:
    """Swap `out` for `new` (or for nothing): renamed aside first, then deleted. A crash between
    the two renames leaves the old folder aside, and `remove_leftovers` puts it back."""
    old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(out, "old"), dir=out.parent))
    os.rename(out, old / out.name)
    if new is not None:
        os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(out: Path) -> list[Path]:
    """Clear what a crashed process left beside `out`; return what it removed.

    Only names this host made are judged, and only those of processes no
    longer running: another machine sharing the folder may still be writing its
    own. A folder set aside by `replace_dir` goes back into place if `out` is
    missing (the crash came between its two renames), else it is removed.
    """
    removed = []
    for leftover in sorted(out.parent.glob(f".{out.name}.*-*@{_HOST}-*")):
        kind, _, owner = leftover.name[len(out.name) + 2:].partition("-")
        pid = owner.partition("@")[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not out.exists() and (leftover / out.name).exists():
            os.rename(leftover / out.name, out)
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    if removed:
        log.info("removed what a crashed process left: %s", ", ".join(p.name for p in removed))
    return removed


# In temporary names: letters, digits and underscores only, so that the name still parses.
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _temporary_prefix(out: Path, kind: str) -> str:
    return f".{out.name}.{kind}-{os.getpid()}@{_HOST}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _umask() -> int:
    """The process umask, read without changing it (os.umask can only set it, racing other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)  # not Linux: set it to read it, and put it back at once
    os.umask(mask)
    return mask
