"""Nothing lost: stop signals from schedulers, two runs on one folder, stale folders, resume with a config file,
bad images, divergence, orphan temporaries. Real processes where the failure is about processes."""

import errno
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.config import ConfigError
from cyclegan.io.checkpoints import load_checkpoint
from cyclegan.io.run_folder import RunFolderBusy, RunLock
from cyclegan.models.cyclegan import CycleGAN
from cyclegan.training.epoch import _ignore_stop_signals, stop_signals_held
from cyclegan.training.loop import TrainingError, train

from .helpers import tiny_config, tiny_dataset

TINY = ["--gen-arch", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
        "--device", "cpu", "--quiet"]


@pytest.fixture
def dataroot(tmp_path):
    return tiny_dataset(tmp_path / "data")


def _command(dataroot, run, *extra):
    return [sys.executable, "-m", "cyclegan", "train", "--dataroot", str(dataroot), "--run-dir", str(run), *TINY,
            *extra]


def _progress(run):
    return load_checkpoint(run / "checkpoints" / "latest.safetensors")[1]["progress"]


def _logged_steps(run):
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def _wait_for_steps(run, count, process, timeout=120):
    log = run / "log.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.communicate()}")
        time.sleep(0.1)
    raise AssertionError(f"no {count} steps within {timeout} s")


# --- stop signals sent to the whole process group -------------------------------------------------------------

def test_sigterm_to_the_process_group_saves_and_exits_cleanly(tmp_path, dataroot):
    """systemd, Slurm and `kill -- -PGID` signal every process of the group, data workers included: the workers
    must leave the stop to the main process, which saves a checkpoint and exits 0 (it died with "DataLoader worker
    killed by signal: Terminated" and saved nothing)."""
    run = tmp_path / "run"
    process = subprocess.Popen(_command(dataroot, run, "--num-workers", "2", "--n-epochs", "500"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_steps(run, 6, process)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "resume with" in stdout and "Traceback" not in stderr
    steps = _progress(run)["step"]
    assert steps >= 6 and _logged_steps(run) == list(range(1, steps + 1))
    resumed = subprocess.run([sys.executable, "-m", "cyclegan", "train", "--quiet", "--resume", "--run-dir", str(run),
                              "--max-steps", "2", "--num-workers", "2"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert _progress(run)["step"] == steps + 2


class _WorkerSignals(torch.utils.data.Dataset):
    """Each item: whether this data worker ignores SIGTERM, and whether it still holds it back."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        return torch.tensor([signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, held])


def _slow_worker_start(folder):
    def start(worker_id):
        (folder / f"{os.getpid()}.pid").touch()
        time.sleep(1.5)  # the SIGTERM arrives now, before the worker ignores it
        _ignore_stop_signals(worker_id)
    return start


def test_a_sigterm_while_data_workers_start_does_not_kill_them(tmp_path):
    """The group's SIGTERM can reach a data worker before its init function ignores it (at an epoch's start, when
    the workers are new): held back until then, it is dropped instead of killing the worker ("DataLoader worker
    exited unexpectedly" stopped a torchrun run this way)."""
    loader = torch.utils.data.DataLoader(_WorkerSignals(), num_workers=1, worker_init_fn=_slow_worker_start(tmp_path))
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with stop_signals_held():
        batches = iter(loader)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # the main process gets its signals again
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("*.pid")) and time.monotonic() < deadline:
        time.sleep(0.02)
    (pid_file,) = tmp_path.glob("*.pid")
    os.kill(int(pid_file.stem), signal.SIGTERM)
    items = torch.cat(list(batches))
    assert items.tolist() == [[True, False], [True, False]]  # alive, ignoring it, nothing held any more


@pytest.mark.slow
def test_sigterm_to_torchrun_and_its_workers_saves_the_run(tmp_path, dataroot):
    """Under torchrun, a SIGTERM to its group makes torchrun forward it to each rank's own process group (rank and
    data workers): every rank stops after the same step and rank 0 saves. torchrun itself then exits non-zero,
    as it does whenever it is signalled; the ranks exited 0 and the run resumes."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "cyclegan", "train", "--dataroot", str(dataroot), "--run-dir", str(run), *TINY, "--num-workers", "1",
               "--n-epochs", "500", "--pool-size", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for_steps(run, 4, process, timeout=180)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert "stopped (SIGTERM)" in stderr and "killed by signal" not in stderr, stderr[-3000:]
    progress = _progress(run)
    assert progress["world_size"] == 2 and progress["step"] >= 4
    assert _logged_steps(run) == list(range(1, progress["step"] + 1))


# --- one run per folder --------------------------------------------------------------------------------------

def test_a_second_training_in_the_same_folder_is_refused(tmp_path, dataroot):
    run = tmp_path / "run"
    first = subprocess.Popen(_command(dataroot, run, "--num-workers", "0", "--n-epochs", "500"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_steps(run, 2, first)
        for extra in ([], ["--resume"]):
            second = subprocess.run(_command(dataroot, run, "--num-workers", "0", *extra), capture_output=True,
                                    text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            assert f"in use by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 0
    steps = _progress(run)["step"]
    assert _logged_steps(run) == list(range(1, steps + 1))  # nobody else wrote into the log
    assert not (run / ".lock").exists()


def test_the_lock_of_a_killed_training_is_not_in_the_way(tmp_path, dataroot):
    run = tmp_path / "run"
    process = subprocess.Popen(_command(dataroot, run, "--num-workers", "0", "--n-epochs", "500",
                                        "--save-every", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_steps(run, 9, process)  # 4 steps an epoch: two epochs' checkpoints
    process.kill()
    process.communicate()
    assert json.loads((run / ".lock").read_text())["pid"] == process.pid  # left behind by kill -9
    result = train(tiny_config(run, dataroot), resume=True, overrides={"n_epochs": 3, "n_epochs_decay": 0},
                   show_progress=False)
    assert result.epochs_done == 3 and not (run / ".lock").exists()


def test_without_flock_the_record_decides_and_a_dead_holder_is_stale(tmp_path, monkeypatch):
    """Some network file systems have no flock (ENOLCK): then the lock file's record is the lock."""
    def no_flock(*_args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("cyclegan.io.run_folder.fcntl.flock", no_flock)
    path = tmp_path / ".lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = os.uname().nodename
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": host, "started": time.time()}))
    lock = RunLock(path)
    lock.acquire()  # the recorded process is gone: stale
    assert json.loads(path.read_text())["pid"] == os.getpid()
    with pytest.raises(RunFolderBusy, match=f"process {os.getpid()} on {host}"):
        RunLock(path).acquire()
    lock.release()
    assert not path.exists()
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": time.time()}))
    with pytest.raises(RunFolderBusy, match="process 1 on elsewhere"):  # another host: cannot be checked
        RunLock(path).acquire()


# --- a folder that holds a run ------------------------------------------------------------------------------

def test_a_folder_with_an_old_log_is_refused_unless_overwrite(tmp_path, dataroot, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps({"step": s, "losses": {}}) + "\n" for s in range(1, 7)))
    options = ["train", "--dataroot", str(dataroot), "--run-dir", str(run), *TINY, "--num-workers", "0",
               "--n-epochs", "1", "--n-epochs-decay", "0"]
    assert main(options) == 2
    error = capsys.readouterr().err
    assert "already holds a run (log.jsonl)" in error and "--overwrite" in error
    assert len((run / "log.jsonl").read_text().splitlines()) == 6  # untouched
    (run / "notes.txt").write_text("mine")
    assert main([*options, "--overwrite"]) == 0
    assert _logged_steps(run) == [1, 2, 3, 4]  # afresh, not appended to the old steps
    assert (run / "notes.txt").read_text() == "mine"  # only what a run writes is removed
    assert main([*options, "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_steps_must_be_positive(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--run-dir", str(tmp_path / "run"), "--max-steps", value])
    assert exit_info.value.code == 2 and "must be at least 1" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="max_steps"):
        train(tiny_config(tmp_path / "run", tmp_path), max_steps=int(value))


# --- resume with a config file ---------------------------------------------------------------------------------

def test_resume_applies_what_may_change_from_a_config_file_and_refuses_the_rest(tmp_path, dataroot, capsys):
    run = tmp_path / "run"
    options = ["--run-dir", str(run), "--quiet"]
    assert main(["train", "--dataroot", str(dataroot), *TINY, "--num-workers", "0", "--n-epochs", "2",
                 "--n-epochs-decay", "0", "--lr", "0.0002", *options]) == 0
    assert _progress(run)["epoch"] == 2
    longer = tmp_path / "longer.yaml"  # repeats unchanged options, as a config file of the run would
    longer.write_text("train:\n  n_epochs: 3\n  lr: 0.0002\n  save_every: 1\nmodel:\n  ngf: 4\n")
    assert main(["train", "--resume", "--config", str(longer), *options]) == 0
    assert _progress(run)["epoch"] == 3 and "finished after 3 epoch(s)" in capsys.readouterr().out
    assert "n_epochs: 3" in (run / "config.yaml").read_text()
    changed = tmp_path / "changed.yaml"
    changed.write_text("n_epochs: 4\nlr: 0.001\nngf: 8\n")
    assert main(["train", "--resume", "--config", str(changed), *options]) == 2
    error = capsys.readouterr().err
    assert "ngf: 4 -> 8" in error and "lr: 0.0002 -> 0.001" in error and "n_epochs" not in error.split("only")[0]
    assert main(["train", "--resume", "--lr", "0.001", *options]) == 2  # flags likewise
    assert "lr: 0.0002 -> 0.001" in capsys.readouterr().err
    assert _progress(run)["epoch"] == 3  # the refused resumes changed nothing


# --- bad images ------------------------------------------------------------------------------------------------

def test_every_unreadable_image_is_listed_before_the_first_step(tmp_path, dataroot, capsys):
    (dataroot / "trainB" / "zz_text.png").write_text("not an image")
    (dataroot / "trainA" / "empty.jpg").write_bytes(b"")
    run = tmp_path / "run"
    assert main(["train", "--dataroot", str(dataroot), "--run-dir", str(run), *TINY, "--num-workers", "2"]) == 2
    error = capsys.readouterr().err
    assert "2 training image(s) cannot be read" in error and "zz_text.png" in error and "empty.jpg" in error
    assert not (run / "log.jsonl").exists() and not (run / "checkpoints" / "latest.safetensors").exists()


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still reads; the pixels do not


@pytest.mark.parametrize("workers", [0, 2])
def test_an_image_that_fails_mid_run_leaves_a_resumable_checkpoint(tmp_path, workers, capsys):
    root = tiny_dataset(tmp_path / "data", count_a=6, count_b=1)  # every step loads the one B image
    run = tmp_path / "run"
    options = ["train", "--dataroot", str(root), "--run-dir", str(run), *TINY, "--num-workers", str(workers),
               "--n-epochs", "2", "--n-epochs-decay", "0", "--serial-batches"]
    good = (root / "trainA" / "005.png").read_bytes()
    _truncate(root / "trainA" / "005.png")  # the sixth A image: serial order, so step 6 of each epoch
    assert main(options) == 1
    assert not multiprocessing.active_children()  # the workers were ended, or they would hold the process at exit
    error = capsys.readouterr().err
    assert "training stopped at epoch 1, iteration 5 (step 5)" in error and "005.png" in error
    assert "Traceback" not in error and "--resume" in error
    assert _progress(run)["step"] == 5 and _logged_steps(run) == [1, 2, 3, 4, 5]
    (root / "trainA" / "005.png").write_bytes(good)
    assert main(["train", "--resume", "--run-dir", str(run), "--quiet"]) == 0
    assert _progress(run)["step"] == 12 and _logged_steps(run) == list(range(1, 13))


# --- divergence ------------------------------------------------------------------------------------------------

def test_a_diverging_run_stops_and_keeps_its_last_finite_checkpoint(tmp_path, dataroot, capsys):
    run = tmp_path / "run"
    options = ["train", "--dataroot", str(dataroot), "--run-dir", str(run), *TINY, "--num-workers", "0"]
    assert main([*options, "--lr", "1e30", "--n-epochs", "3", "--n-epochs-decay", "0"]) == 1
    error = capsys.readouterr().err
    assert "training diverged at step" in error and ("nan" in error or "inf" in error)
    assert "No checkpoint had been written" in error
    assert not (run / "checkpoints" / "latest.safetensors").exists()


def _poison_step(monkeypatch, at_steps):
    """Make chosen steps of CycleGAN produce non-finite gradients, as an overflow would."""
    original, calls = CycleGAN.training_step, []

    def step(self, real_a, real_b):
        calls.append(1)
        if len(calls) in at_steps:
            real_a = real_a * math.inf
        return original(self, real_a, real_b)

    monkeypatch.setattr(CycleGAN, "training_step", step)


def test_divergence_after_a_checkpoint_leaves_that_checkpoint_as_latest(tmp_path, dataroot, monkeypatch):
    run = tmp_path / "run"
    _poison_step(monkeypatch, at_steps={6})  # epoch 1 (4 steps) saved; epoch 2 diverges
    with pytest.raises(TrainingError, match="diverged at step 6") as error:
        train(tiny_config(run, dataroot), show_progress=False)
    assert "holds finite weights" in str(error.value)
    _, state = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert state["progress"]["step"] == 4
    assert all(torch.isfinite(t).all() for weights in state["nets"].values() for t in weights.values())


def test_skip_nonfinite_steps_skips_the_update_and_goes_on(tmp_path, dataroot, monkeypatch):
    run = tmp_path / "run"
    _poison_step(monkeypatch, at_steps={2, 7})
    result = train(tiny_config(run, dataroot, skip_nonfinite_steps=True), show_progress=False)
    assert result.steps_done == 12 and not result.stopped_early
    _, state = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert all(torch.isfinite(t).all() for weights in state["nets"].values() for t in weights.values())
    losses = [json.loads(line)["losses"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert [i + 1 for i, record in enumerate(losses) if not all(map(math.isfinite, record.values()))] == [2, 7]


# --- orphan temporaries ------------------------------------------------------------------------------------------

def test_temporaries_of_a_killed_save_are_removed_on_resume(tmp_path, dataroot):
    run = tmp_path / "run"
    train(tiny_config(run, dataroot), show_progress=False, max_steps=2)
    orphan = run / "checkpoints" / ".latest.safetensors.k3j2l1ab.tmp"
    orphan.write_bytes(b"half a checkpoint")
    train(tiny_config(run, dataroot), resume=True, show_progress=False, max_steps=1)
    assert not orphan.exists() and (run / "checkpoints" / "latest.safetensors").exists()


def test_an_image_file_is_checked_by_its_header_only(tmp_path):
    from cyclegan.io.images import unreadable_images

    good, text = tmp_path / "good.png", tmp_path / "text.png"
    Image.effect_noise((64, 64), 50).save(good)
    text.write_text("hello")
    truncated = tmp_path / "truncated.png"  # the pixels are cut off: found when loaded, mid-run (test above)
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    problems = unreadable_images([good, text, truncated])
    assert len(problems) == 1 and problems[0].startswith(f"{text}:")
