"""Run folders: the one set of rules both faces follow, and starting a training run.

A run folder holds ``model.safetensors`` (best validation score), ``last.safetensors`` and
``training_state.safetensors`` (everything needed to resume exactly). A new run never
overwrites an earlier one; ``resume`` continues the one that is there.

A run owns its folder while it trains: :class:`RunLock` writes ``.napari-gan.lock`` (process
id, host, start time) with an exclusive create, so a second run into the same folder, from
this process or another, is refused while the owner lives; a lock left by a process that
died (killed, power cut) is taken over with a warning. :func:`start` takes the lock and hands
it to the trainer, whose loop releases it when it ends, however it ends.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import checkpoint
from .errors import NapariGanError
from .io import check_writable

if TYPE_CHECKING:
    import torch

    from .families import Family, Images
    from .training.base import Trainer

RUNS_HOME = Path.home() / "napari-gan-runs"
LOCK_FILENAME = ".napari-gan.lock"
#: a lock file without readable contents younger than this may still be being written
_UNREADABLE_GRACE_S = 30.0

_held: set[str] = set()          # lock files this process holds (by absolute path)
_held_guard = threading.Lock()


class RunLock:
    """Ownership of a run folder: ``.napari-gan.lock`` holding the owner's process id.

    :meth:`acquire` creates the file atomically (``O_CREAT | O_EXCL``); it refuses a folder
    whose owner is alive (another process on this host, another run of this process, or a
    process on another host, which cannot be checked) and takes over a stale lock, one whose
    process has died, with a :class:`RunLockWarning`. :meth:`release` removes the file if it
    is still this lock's; it is idempotent and also runs when the object is collected.
    Usable as a context manager.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        self.path = self.folder / LOCK_FILENAME
        self.held = False
        self.took_over: dict | None = None      # the stale owner replaced, if any
        self._token = ""

    # ------------------------------------------------------------------ public
    def acquire(self) -> "RunLock":
        if self.held:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise NapariGanError(f"'{self.folder}' is a file; give a folder for the run.") from exc
        except OSError as exc:
            raise NapariGanError(f"Cannot create folder '{self.folder}': {exc.strerror or exc}.") from exc
        for _ in range(3):
            if self._create():
                return self
            owner = _read_owner(self.path)
            if owner is None:            # vanished meanwhile: try again
                continue
            if not self._is_stale(owner):
                raise NapariGanError(self._held_message(owner))
            if not self._remove_stale(owner):
                continue
            self.took_over = owner
            warnings.warn(RunLockWarning(
                f"'{self.folder}' was locked by process {owner.get('pid', '?')} (started "
                f"{owner.get('started', 'at an unknown time')}), which no longer runs; taking the "
                "folder over."), stacklevel=2)
        raise NapariGanError(f"Could not take the lock of '{self.folder}' ({self.path}): other "
                             "processes keep taking it; is another run starting there?")

    def release(self) -> None:
        """Give the folder back (removes the lock file if it is still this lock's)."""
        if not self.held:
            return
        self.held = False
        with _held_guard:
            _held.discard(self._key())
        owner = _read_owner(self.path)
        if owner is not None and owner.get("token") == self._token:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass

    # ------------------------------------------------------------------ inside
    def _create(self) -> bool:
        token = f"{os.getpid()}-{time.time_ns()}-{id(self)}"
        content = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                              "started": _dt.datetime.now().isoformat(timespec="seconds")})
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise NapariGanError(f"Cannot write to '{self.folder}': {exc.strerror or exc}.") from exc
        try:
            os.write(fd, content.encode())
        except OSError as exc:
            os.close(fd)
            os.unlink(self.path)
            raise NapariGanError(f"Cannot write the lock file '{self.path}': {exc.strerror or exc}.") from exc
        os.close(fd)
        self._token, self.held = token, True
        with _held_guard:
            _held.add(self._key())
        return True

    def _key(self) -> str:
        """The lock file's real path (one folder reached through links is one folder)."""
        return os.path.join(os.path.realpath(self.folder), LOCK_FILENAME)

    def _is_stale(self, owner: dict) -> bool:
        if owner.get("unreadable"):
            return owner["age_s"] > _UNREADABLE_GRACE_S
        pid, host = owner.get("pid"), owner.get("host")
        if not isinstance(pid, int) or host != socket.gethostname():
            return False         # another machine's process: cannot tell, so it is alive
        if pid == os.getpid():   # this process: held only if one of its runs took it
            with _held_guard:
                return self._key() not in _held
        return not _process_alive(pid, owner.get("started"))

    def _remove_stale(self, owner: dict) -> bool:
        """Remove the stale lock file, and only it (it is renamed aside first, so a fresh lock
        another process created meanwhile is put back, not deleted)."""
        aside = self.path.with_name(f"{LOCK_FILENAME}.stale-{os.getpid()}-{time.time_ns()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise NapariGanError(f"Cannot replace the stale lock '{self.path}': {exc.strerror or exc}.") from exc
        moved = _read_owner(aside)
        if moved is not None and moved.get("token") != owner.get("token"):
            try:                 # someone else's fresh lock: put it back (never over another)
                os.link(aside, self.path)
            except OSError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    def _held_message(self, owner: dict) -> str:
        if owner.get("unreadable"):
            return (f"'{self.folder}' is being set up by another napari-gan run (lock file "
                    f"'{self.path}'); choose another folder or wait.")
        pid, host = owner.get("pid", "?"), owner.get("host", "?")
        started = owner.get("started", "an unknown time")
        if host != socket.gethostname():
            return (f"'{self.folder}' is in use by napari-gan process {pid} on {host} (since {started}). "
                    f"If no run uses it any more, delete '{self.path}' and try again; otherwise choose "
                    "another folder.")
        who = "another run in this program" if pid == os.getpid() else f"napari-gan process {pid}"
        return (f"'{self.folder}' is in use by {who} (since {started}); two runs must not write into "
                "one folder. Wait for it to end, stop it, or choose another folder.")


class RunLockWarning(UserWarning):
    """A stale run-folder lock (its process died) was taken over."""


def _read_owner(path: Path) -> dict | None:
    """The lock file's contents; ``{"unreadable": True, "age_s": ...}`` when it is not (yet)
    valid; ``None`` when there is no lock file."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return {"unreadable": True, "age_s": 0.0}
    try:
        owner = json.loads(text)
        if isinstance(owner, dict) and isinstance(owner.get("pid"), int):
            return owner
    except ValueError:
        pass
    return {"unreadable": True, "age_s": age}


def _process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` runs (and, where Linux tells, started before the lock was
    written: otherwise the id was reused by an unrelated process)."""
    if pid <= 0:
        return False
    if os.name == "nt":          # os.kill would end the process there
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                     # another user's process: it exists
    except OSError:
        return True
    start = _process_start_time(pid)
    if start is not None and started:
        try:
            locked = _dt.datetime.fromisoformat(started).timestamp()
        except ValueError:
            return True
        if start > locked + 2.0:   # the process is younger than the lock: a reused id
            return False
    return True


def _windows_process_alive(pid: int) -> bool:
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)   # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259                              # STILL_ACTIVE
    except Exception:
        return True


def _process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; ``None`` elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return None


def default_folder(family: str = "run") -> Path:
    """A new folder name for a run started without one: ~/napari-gan-runs/FAMILY-DATE-TIME."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return RUNS_HOME / f"{family}-{stamp}"


def check_folder(out: str | Path, resume: bool) -> Path | None:
    """Check ``out`` for a new run (nothing of an earlier run in it) or for resuming (its
    training state is there); return the state file when resuming."""
    out = Path(out).expanduser()
    state = out / checkpoint.STATE_FILENAME
    if out.exists() and not out.is_dir():
        raise NapariGanError(f"'{out}' is a file; give a folder for the run.")
    if resume:
        if not state.is_file():
            raise NapariGanError(f"Nothing to resume in '{out}': it holds no saved training run "
                                 f"({checkpoint.STATE_FILENAME}).")
        check_writable(state)
        return state
    if state.exists():
        raise NapariGanError(f"'{out}' already holds a training run; resume it (--resume, or Resume in "
                             "napari) or choose another folder.")
    models = [out / name for name in (checkpoint.MODEL_FILENAME, checkpoint.LAST_FILENAME)]
    if any(m.exists() for m in models):
        raise NapariGanError(f"'{out}' already holds a model; choose another folder so that it is not "
                             "overwritten.")
    check_writable(out / checkpoint.MODEL_FILENAME)
    return None


def start(family: "Family", values: dict, out: str | Path, resume: bool, device: "torch.device",
          read_images: Callable[[object], dict[str, "Images"]]) -> "Trainer":
    """Take the folder (:class:`RunLock`; under torchrun process 0 takes it for all), check
    it, make (or, resuming, read back) the configuration, read the images with
    ``read_images(cfg)`` and return the trainer, restored when resuming. The trainer holds
    the lock (``trainer.run_lock``) and releases it when its loop ends; when anything here
    fails the lock is released (and a folder made for it removed again)."""
    from .device import distributed_info

    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise NapariGanError(f"'{out}' is a file; give a folder for the run.")
    created = not out.exists()
    lock = RunLock(out) if distributed_info().is_main else None
    if lock is not None:
        lock.acquire()
    try:
        trainer = _start(family, values, out, resume, device, read_images)
    except BaseException:
        if lock is not None:
            lock.release()
            if created:
                try:
                    out.rmdir()          # only when still empty
                except OSError:
                    pass
        raise
    trainer.run_lock = lock
    return trainer


def _start(family, values, out: Path, resume: bool, device, read_images) -> "Trainer":
    from .training.base import RunSettings

    state = check_folder(out, resume)
    run = RunSettings(**{k: v for k, v in values.items() if k in RunSettings.__dataclass_fields__})
    normalization = None
    if state is not None:
        header = checkpoint.read_header(state, expect_role="training_state")
        if header.family != family.name:
            raise NapariGanError(f"The run in '{out}' is a {header.family} run, not {family.name}.")
        cfg = family.config_from_header(header)
        normalization = header.normalization
    else:
        cfg = family.make_config(values, device)
    images = read_images(cfg)
    trainer = family.make_trainer(cfg, images, out, run.budget(), device, run.seed, normalization,
                                  log_every=run.log_every, val_every=run.val_every)
    if state is not None:
        trainer.resume_from(state)
        if run.steps is not None and trainer.step >= run.steps:
            raise NapariGanError(f"The run in '{out}' already reached step {trainer.step}; ask for more "
                                 "steps than that to train further.")
    return trainer
