"""Run folders are owned (a lock with the owner's process id), and a run stopped by SIGTERM
or SIGHUP saves its model and its resumable state and exits with 128 + the signal."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from napari_gan.core import runs
from napari_gan.core.errors import NapariGanError
from tests.core.safety_common import (TINY, assert_one_error, hashes, run_cli, subprocess_env, write_pairs)


def _train(inp, gt, out, *extra):
    return ["train", "pix2pix", "--input", inp, "--target", gt, "--out", out, *TINY, "--quiet", *extra]


def _lock(folder, pid, host=None, started="2020-01-01T00:00:00"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / runs.LOCK_FILENAME).write_text(json.dumps(
        {"pid": pid, "host": host or socket.gethostname(), "token": "x", "started": started}))


@pytest.fixture
def other_process():
    """A live process that is not this one (the owner of a lock)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_live_owner_keeps_its_folder(tmp_path, capsys, other_process):
    inp, gt = write_pairs(tmp_path)
    out = tmp_path / "run"
    assert run_cli(capsys, *_train(inp, gt, out, "--steps", "2"))[0] == 0
    assert not (out / runs.LOCK_FILENAME).exists()          # released at the end
    _lock(out, other_process, started="2999-01-01T00:00:00")
    before = hashes(out, inp, gt)
    code, _, err = run_cli(capsys, *_train(inp, gt, out, "--resume", "--steps", "4"))
    assert_one_error(code, err, f"in use by napari-gan process {other_process}", "choose another folder")
    fresh = tmp_path / "fresh"
    _lock(fresh, other_process, started="2999-01-01T00:00:00")
    code, _, err = run_cli(capsys, *_train(inp, gt, fresh, "--steps", "2"))
    assert_one_error(code, err, "in use by napari-gan process")
    _lock(fresh, 12345, host="another-node")                 # cannot be checked: kept, with advice
    code, _, err = run_cli(capsys, *_train(inp, gt, fresh, "--steps", "2"))
    assert_one_error(code, err, "on another-node", "delete")
    assert hashes(out, inp, gt) == before
    assert list(fresh.iterdir()) == [fresh / runs.LOCK_FILENAME]


def test_a_dead_owners_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    _lock(out, dead.pid, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    code, stdout, err = run_cli(capsys, *_train(inp, gt, out, "--steps", "2"))
    assert code == 0, err
    assert err.startswith("warning: ") and f"locked by process {dead.pid}" in err and "taking the folder over" in err
    assert (out / "training_state.safetensors").is_file() and not (out / runs.LOCK_FILENAME).exists()
    assert not [p for p in out.iterdir() if ".stale-" in p.name]


def test_the_lock_is_released_however_a_run_ends(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path)
    (gt / "f0.tif").write_bytes(b"not a TIFF")               # fails while the run reads its images
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *_train(inp, gt, out, "--steps", "2"))
    assert_one_error(code, err, "f0.tif")
    assert not out.exists()                                  # the folder made for it is gone again
    # within one process (napari): a second run is refused while the first holds the folder
    with runs.RunLock(out) as lock:
        assert json.loads((out / runs.LOCK_FILENAME).read_text())["pid"] == os.getpid()
        with pytest.raises(NapariGanError, match="in use by another run in this program"):
            runs.RunLock(out).acquire()
        assert lock.held
    assert not (out / runs.LOCK_FILENAME).exists()
    # a lock left by this process id without being held here (a reused id, e.g. in a
    # container) is stale
    _lock(out, os.getpid())
    with pytest.warns(runs.RunLockWarning, match="no longer runs"):
        runs.RunLock(out).acquire().release()
    assert list(out.iterdir()) == []


def _stopped_by_a_signal(inp, gt, out, signame):
    """Start a 5-minute training run in a subprocess; once it reports its first step, send
    ``signame``. Returns (process, stdout so far) while it winds down."""
    cmd = [sys.executable, "-m", "napari_gan.cli", *map(str, _train(inp, gt, out, "--minutes", "5")),
           "--log-every", "1", "--val-every", "1000"]
    cmd.remove("--quiet")
    env = dict(subprocess_env(), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:                                   # wait for the first training step
        lines.append(line)
        if line.startswith("step"):
            break
    assert lines and lines[-1].startswith("step"), "".join(lines)
    assert (out / runs.LOCK_FILENAME).is_file()
    proc.send_signal(getattr(signal, signame))
    return proc, "".join(lines)


def test_a_stop_signal_saves_the_run_and_exits_with_its_status(tmp_path, capsys):
    """SIGTERM (a cluster's time limit) and SIGHUP (a closed terminal), in two runs at once."""
    inp, gt = write_pairs(tmp_path)
    procs = {}
    ends = {}
    try:
        threads = []
        for signame in ("SIGTERM", "SIGHUP"):
            def start(signame=signame):
                procs[signame] = None
                proc, head = _stopped_by_a_signal(inp, gt, tmp_path / signame, signame)
                procs[signame] = proc
                rest, err = proc.communicate(timeout=240)
                ends[signame] = (proc.returncode, head + rest, err)
            threads.append(threading.Thread(target=start))
            threads[-1].start()
        for t in threads:
            t.join(300)
    finally:
        for proc in procs.values():
            if proc is not None and proc.poll() is None:
                proc.kill()
    for signame, status in (("SIGTERM", 143), ("SIGHUP", 129)):
        assert signame in ends, f"{signame}: the run never reported a step"
        code, stdout, err = ends[signame]
        out = tmp_path / signame
        assert code == status, err
        assert f"stopped by {signame}" in err and "continue with --resume" in err and "Traceback" not in err
        assert "training stopped after" in stdout
        assert (out / "training_state.safetensors").is_file() and (out / "model.safetensors").is_file()
        assert not (out / runs.LOCK_FILENAME).exists() and not [p for p in out.iterdir() if p.suffix == ".part"]
    code, stdout, _ = ends["SIGTERM"]
    steps = int(stdout.split("training stopped after ")[1].split()[0])
    out = tmp_path / "SIGTERM"
    code, stdout, err = run_cli(capsys, *_train(inp, gt, out, "--resume", "--steps", str(steps + 1)))
    assert code == 0, err
    assert f"starting at step {steps}" in stdout and f"after {steps + 1} steps" in stdout
