"""Files in and out: atomic publishing that never loses data, and the check of a file given to read.

    publish_file(path, content, overwrite=False, what="file")
    publish_files([(path, content), ...], what="files")       several files: all of them or none
    check_input_file(path, what)                               a regular file, refused before reading

``content`` is bytes, a str (written as UTF-8) or a callable that writes into a binary handle
(``lambda handle: np.savez(handle, **arrays)``).

How a file is published: it is written in full to a temporary name in its target folder
(``.<name>.<random>.tmp``, created with O_EXCL and mode 0666 less the umask, so 0644 under the usual
umask 022), flushed and fsynced; then its final name is created with ``os.link(temporary, final)``,
which fails rather than replaces when the name exists. Of several processes publishing one name,
exactly one succeeds and the others get ``NameTakenError``; a reader sees a whole file or none.
Where the file system has no hard links, the final name is reserved with O_CREAT|O_EXCL and the
temporary file renamed over the reservation: a reader may see an empty file for a moment, but
nothing is ever replaced. With ``overwrite=True`` (one file only) ``os.replace`` swaps the new
file in atomically: concurrent writers leave one of their whole files, never a mixture.

``publish_files`` writes every temporary file first, then publishes them in the order given; when a
later one fails (its name is taken, an error, Ctrl-C) the ones already published are removed again,
so a half-published set never stays. Put the file that readers look for last (a reader that finds
it finds the others). Temporary files are removed on every failure, KeyboardInterrupt included.

Every failure a user can fix is one UserError sentence: a name taken (``NameTakenError``, also a
FileExistsError), a missing folder (named, not the temporary file), no permission, a full disk or a
file-size limit (ENOSPC, EDQUOT, EFBIG: with SIGXFSZ ignored, RLIMIT_FSIZE gives EFBIG).
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from typing import Callable, Iterable, Union

from .errors import NameTakenError, UserError

Content = Union[bytes, str, Callable]

FULL_DISK = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)


def publish_file(path, content: Content, overwrite: bool = False, what: str = "file") -> None:
    """Publish one file atomically; see the module docstring."""
    publish_files([(path, content)], overwrite=overwrite, what=what)


def publish_files(items: Iterable[tuple[object, Content]], overwrite: bool = False, what: str = "file") -> None:
    """Publish several files, all of them or none; see the module docstring."""
    items = [(os.fspath(path), content) for path, content in items]
    if overwrite and len(items) != 1:
        raise ValueError("overwrite=True replaces files one at a time, so it takes exactly one file")
    temporaries, identities = [], []     # every temporary file created, and its (st_dev, st_ino)
    published = []                       # (final path, identity) of every name created so far
    try:
        for path, content in items:
            tmp, fd = _create_temporary(path, what)
            temporaries.append(tmp)
            identities.append(_write(fd, content, path, what))
        for (path, _), tmp, identity in zip(items, temporaries, identities):
            _give_name(tmp, path, overwrite, what)
            published.append((path, identity))
        for folder in {_folder(path) for path, _ in items}:
            _sync_folder(folder)
    except BaseException:
        for path, identity in reversed(published):
            _remove_if_ours(path, identity)
        raise
    finally:
        for tmp in temporaries:
            _remove_quietly(tmp)


def check_input_file(path, what: str) -> str:
    """The path as a str when it names a regular file; otherwise one sentence, before anything is read
    (a device such as /dev/zero would never end, a folder cannot be read as a file)."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; check the path.") from None
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be opened ({exc.strerror}); check the path and its permissions.") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{what} {path} is a folder, not a file; give the path of the file itself.")
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is not a regular file (a device, pipe or socket); give the path of a file.")
    return path


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _create_temporary(path: str, what: str) -> tuple[str, int]:
    """A new, empty temporary file next to ``path``: its name and an open descriptor."""
    folder = _folder(path)
    stem = os.path.basename(path)[:100]      # a long final name must not push this one past the limit
    while True:
        tmp = os.path.join(folder, f".{stem}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, NEW_FILE_FLAGS, 0o666)   # 0666 less the umask, unlike mkstemp's 0600
        except FileExistsError:
            continue
        except OSError as exc:
            raise _user_error(exc, path, what) from None


def _write(fd: int, content: Content, path: str, what: str) -> tuple[int, int]:
    """Write ``content`` through ``fd`` (closed here) to the disk; returns the file's (st_dev, st_ino)."""
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
            info = os.fstat(handle.fileno())
    except OSError as exc:
        raise _user_error(exc, path, what) from None
    return info.st_dev, info.st_ino


def _give_name(tmp: str, path: str, overwrite: bool, what: str) -> None:
    """Give the written temporary file its final name, never replacing a file unless ``overwrite``."""
    try:
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)                             # atomic, and fails when the name exists
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            # No hard links here: reserve the name exclusively, then rename over the reservation.
            os.close(os.open(path, NEW_FILE_FLAGS, 0o666))
            try:
                os.replace(tmp, path)
            except BaseException:
                _remove_quietly(path)                      # the empty reservation is ours
                raise
    except FileExistsError:
        raise NameTakenError(f"{path} already exists; choose another file name so the earlier {what} is kept.",
                             path) from None
    except OSError as exc:
        raise _user_error(exc, path, what) from None


def _user_error(exc: OSError, path: str, what: str) -> UserError:
    """One sentence for an OSError met while writing ``path``."""
    folder = _folder(path)
    if exc.errno in FULL_DISK:
        return UserError(f"cannot write {what} {path}: the disk is full or a file-size limit was reached "
                         f"({exc.strerror}); free some space or choose another folder.")
    if exc.errno == errno.ENOENT and not os.path.isdir(folder):
        return UserError(f"cannot write {what} {path}: the folder {folder} does not exist; create it or "
                         f"choose another folder.")
    if exc.errno == errno.ENOTDIR:
        return UserError(f"cannot write {what} {path}: {folder} is not a folder; choose another path.")
    return UserError(f"cannot write {what} {path} in {folder} ({exc.strerror}); choose a folder you can write to.")


def _remove_if_ours(path: str, identity: tuple[int, int]) -> None:
    """Unpublish ``path`` only if it is still the file this call wrote (never someone else's)."""
    try:
        info = os.stat(path, follow_symlinks=False)
        if (info.st_dev, info.st_ino) == identity:
            os.unlink(path)
    except OSError:
        pass


def _remove_quietly(path: str) -> None:
    """Remove a temporary file; a failure here must not hide the error being raised."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _sync_folder(folder: str) -> None:
    """Flush the folder's entries too, so that a published name survives a crash (best effort)."""
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
