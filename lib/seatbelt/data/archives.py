"""A dataset's files read from a directory, a zip or a tar, with errors naming archive and member.

The archive type is told by the file's first bytes, not by its name or by which reader fails:
a truncated zip (its central directory lost) is reported as a damaged zip, not as an unreadable
tar, and a truncated tar.gz as a damaged tar rather than a bare EOFError. macOS metadata
(``__MACOSX/`` folders and ``._*`` AppleDouble files, which zips made on a Mac carry beside
every image) is skipped, as it holds no data.
"""

from __future__ import annotations

import lzma
import tarfile
import zipfile
import zlib
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Literal

from .files import DamagedFileError

_TAR_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # an unsupported compression method
    RuntimeError,  # an encrypted member
)


def damaged(src: Path, member: str | None, problem: str) -> DamagedFileError:
    """The error for an unreadable ``src`` (or its ``member``), saying to replace the file."""
    if member and src.is_dir():
        return DamagedFileError(f"{src.parent / member} {problem}. Replace it with an intact copy.")
    where = f"{src}: member {member}" if member else str(src)
    return DamagedFileError(
        f"{where} {problem}. The file is damaged or incomplete: copy or download {src.name} again "
        "and compare its SHA-256 with the published one."
    )


def kind(src: Path) -> Literal["dir", "zip", "tar"]:
    """What ``src`` is, from its first bytes: a zip, a tar (plain, gzip, bzip2, xz) or a folder."""
    if src.is_dir():
        return "dir"
    with open(src, "rb") as f:
        head = f.read(262)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    begins = f"begins {head[:8]!r}" if head else "is empty"
    raise damaged(src, None, f"is neither a zip nor a tar archive (it {begins})")


def is_metadata(name: str) -> bool:
    """Whether an archive path is macOS metadata: under ``__MACOSX/``, or an AppleDouble ``._*``."""
    parts = name.split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._")


def members(src: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(posix name, reader of its bytes) of every data file in a directory, zip or tar.

    A directory's names start with its own name (``rendered_chairs/...``), an archive's are as
    stored. A reader is valid only until the iteration moves on (a tar is read in one pass).
    """
    found = kind(src)
    if found == "dir":
        for p in sorted(src.rglob("*")):
            name = f"{src.name}/{p.relative_to(src).as_posix()}"
            if p.is_file() and not is_metadata(name):
                yield name, p.read_bytes
    elif found == "zip":
        yield from _zip_members(src)
    else:
        yield from _tar_members(src)


def _zip_members(src: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    try:
        archive = zipfile.ZipFile(src)
    except _ZIP_ERRORS as e:
        raise damaged(src, None, f"is a zip archive that cannot be opened ({e})") from e
    with archive:
        for info in archive.infolist():
            if not info.is_dir() and not is_metadata(info.filename):
                yield info.filename, partial(_read_zip, src, archive, info)


def _read_zip(src: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except _ZIP_ERRORS as e:
        raise damaged(src, info.filename, f"cannot be read ({e})") from e


def _tar_members(src: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    last = None
    try:
        with tarfile.open(src) as archive:
            for member in archive:
                last = member.name
                if member.isfile() and not is_metadata(member.name):
                    yield member.name, partial(_read_tar, src, archive, member)
    except _TAR_ERRORS as e:
        after = f"after member {last}" if last else "at its start"
        raise damaged(src, None, f"is a tar archive that stops being readable {after} ({e})") from e


def _read_tar(src: Path, archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    try:
        return archive.extractfile(member).read()
    except _TAR_ERRORS as e:
        raise damaged(src, member.name, f"cannot be read ({e})") from e
