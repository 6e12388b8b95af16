"""Putting a cached model file where ComfyUI reads it: a hard link when the two paths share a filesystem, else a
copy; never a symlink (ComfyUI and some custom nodes resolve real paths). Blocking file work, run in a thread.

Every placement lands by atomic rename from a hidden temp name, so ComfyUI never lists a half-written model.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class PlacementMethod(StrEnum):
    LINK = "link"  # a new hard link to the cached file
    COPY = "copy"  # a new copy (the model folder is on another filesystem)
    EXISTING = "existing"  # the target already held this file; nothing was written


@dataclass(frozen=True)
class Placement:
    path: Path
    method: PlacementMethod


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_copy_of(target: Path, source: Path) -> bool:
    """A plain file of `source`'s size: enough to recognise a copy we recorded making (never a symlink)."""
    try:
        return target.is_file() and not target.is_symlink() and target.stat().st_size == source.stat().st_size
    except OSError:
        return False


def holds(target: Path, source: Path, *, recorded_copy: bool) -> bool:
    """`target` holds our placement of `source`: a hard link to it, or (when we recorded copying it there) a copy."""
    return same_file(target, source) or (recorded_copy and is_copy_of(target, source))


def place_file(source: Path, target: Path, *, link: bool = True) -> Placement:
    """Make `target` hold the bytes of `source` (replacing whatever is there), by hard link or else by copy."""
    if same_file(source, target):
        return Placement(target, PlacementMethod.EXISTING)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        method = PlacementMethod.COPY
        if link:
            try:
                os.link(source, temp)
                method = PlacementMethod.LINK
            except OSError:  # EXDEV across filesystems; EPERM/EMLINK on some mounts: copy instead
                method = PlacementMethod.COPY
        if method is PlacementMethod.COPY:
            shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return Placement(target, method)


def remove_placement(target: Path, source: Path, *, recorded_copy: bool) -> bool:
    """Delete `target` when it still holds our placement of `source`; someone else's file there is left alone."""
    if not holds(target, source, recorded_copy=recorded_copy):
        return False
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    return True


def place_owned(source: Path, target: Path, *, copies: frozenset[str], replace: bool, alt_tag: str) -> Placement:
    """Place `source` at `target` unless it already holds our placement (`copies`: paths we recorded copying to).

    A foreign file at `target` is overwritten with `replace`; otherwise the file goes beside it as
    `<stem>.<alt_tag><ext>`, so a user's own model of the same name is never clobbered."""

    def ours(path: Path) -> bool:
        return holds(path, source, recorded_copy=str(path) in copies)

    if not replace and target.exists() and not ours(target):
        target = target.with_name(f"{target.stem}.{alt_tag}{target.suffix}")
    if ours(target):
        return Placement(target, PlacementMethod.EXISTING)
    return place_file(source, target)
