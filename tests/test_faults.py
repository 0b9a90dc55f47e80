"""Fault injection: the faults of issue 20 on a tiny run, each checked for its message, the
exit status and that nothing was lost.

One tiny run (`trained`: 6 steps, checkpoints at 3 and 6) is trained once per module and
copied by every test. Runs that resume to the step they restore compile nothing; the two
that train again reuse the first run's compiled step through JAX's persistent compilation
cache. Rows of the issue done elsewhere (with issue 19): a malformed row or a wrong column
name met during training, and an unknown mixture name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, TINY_GIN, train_env

# Lines TensorFlow, XLA and seqio print on every start; anything else on stderr is ours.
STARTUP_NOISE = ("I0000 ", "WARNING: All log messages before absl", "WARNING:absl:Features not")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults")
    (path / "tiny.gin").write_text(TINY_GIN)
    return path


def train(workdir: Path, model_dir: Path, *bindings: str,
          prelude: str = "") -> subprocess.CompletedProcess:
    """`python -m flan_jax.train` on the tiny gin file (after `prelude`, Python run first
    in the same process: how a test fakes what it cannot arrange for real)."""
    argv = [f"--gin_file={workdir / 'tiny.gin'}", f"--gin.MODEL_DIR='{model_dir}'",
            *[f"--gin.{b}" for b in bindings]]
    code = f"{prelude}\nimport sys\nfrom flan_jax import train\nsys.exit(train.main({argv!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO,
                          env=train_env(workdir / "jax_cache"), capture_output=True, text=True,
                          timeout=600)


def messages(result: subprocess.CompletedProcess) -> str:
    """stderr without the start-up lines every run prints; no traceback allowed."""
    lines = [x for x in result.stderr.splitlines() if not x.startswith(STARTUP_NOISE)]
    text = "\n".join(lines)
    assert "Traceback" not in text and "ERROR:" not in text, text[-3000:]
    return text


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    model_dir = workdir / "trained"
    result = train(workdir, model_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def copy_run(trained: Path, where: Path) -> Path:
    return Path(shutil.copytree(trained, where / "run", symlinks=True))


def snapshot(directory: Path) -> dict[str, str]:
    """Relative path -> content hash of every file: what 'nothing changed' compares."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def params(path: Path) -> dict[str, np.ndarray]:
    from flan_jax.interop.checkpoints import load_any
    from flan_jax.interop.common import flatten
    return flatten(load_any(path)[0])


def assert_same_params(a: Path, b: Path) -> None:
    ours, reference = params(a), params(b)
    assert ours.keys() == reference.keys()
    for key in reference:
        np.testing.assert_array_equal(ours[key], reference[key], err_msg=key)


def records(model_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]


def largest_file(directory: Path) -> Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def truncate(path: Path, size: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:size])


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """`directory` unwritable for this process; yields the errno name writes then get.
    chmod binds everyone but root, so root gets a read-only bind mount instead."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield "EACCES"
        finally:
            directory.chmod(mode)
        return
    mount = ["mount", "--bind", str(directory), str(directory)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("running as root where mount is not permitted: cannot make a read-only dir")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(directory)], check=True)
        yield "EROFS"
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@contextlib.contextmanager
def small_filesystem(directory: Path, size_bytes: int) -> Iterator[bool]:
    """A tmpfs of `size_bytes` at `directory` if this process may mount one (True), else
    a plain directory (False)."""
    directory.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(directory)],
        capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


# -- checkpoints that verify themselves ----------------------------------------------------

def test_corrupt_latest_step_falls_back_and_resumes_exactly(workdir, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    truncate(largest_file(run / "6" / "params"))
    damaged = snapshot(run / "6")
    result = train(workdir, run)  # the same command: TRAIN_STEPS = 6
    assert result.returncode == 0, result.stderr[-3000:]
    text = messages(result)
    assert (f"Checkpoint step 6 in {run} cannot be restored: its params cannot be read "
            "(OUT_OF_RANGE") in text
    assert f"Moved it to {run / 'corrupt' / '6'} (kept, not deleted); resuming from step 3" in text
    assert f"Resumed from {run}/3" in result.stdout
    assert snapshot(run / "corrupt" / "6") == damaged  # moved aside as it was
    # Steps 4-6 trained again from step 3 give exactly the original run.
    assert_same_params(run / "6", trained / "6")
    train_losses = [(r["step"], r["loss"]) for r in records(run) if r["kind"] == "train"]
    assert train_losses == [(r["step"], r["loss"]) for r in records(trained)
                            if r["kind"] == "train"]


def _abstract_state(model_dir: Path, **optimizer_settings):
    """The state shapes `train` restores into, for the tiny run's model and optimizer."""
    import jax
    import optax

    from flan_jax.interop.common import read_config
    from flan_jax.training import optimizers
    from flan_jax.training.step import init_train_state

    config = read_config(model_dir / "config.json")
    optimizer = optimizers.make_optimizer(learning_rate=optax.constant_schedule(0.01),
                                          **optimizer_settings)
    abstract = jax.eval_shape(lambda: init_train_state(config, optimizer, jax.random.key(0)))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return config, jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)


def restore(model_dir: Path, **optimizer_settings):
    from flan_jax.training.checkpoints import TrainCheckpoints

    config, abstract = _abstract_state(model_dir, **optimizer_settings)
    checkpoints = TrainCheckpoints(model_dir, config, period=3)
    try:
        return checkpoints.restore_or_none(abstract)
    finally:
        checkpoints.close()


DAMAGE = {
    "params": ("params", lambda step: truncate(largest_file(step / "params")), "cannot be read"),
    "opt_state": ("opt_state", lambda step: truncate(largest_file(step / "opt_state")),
                  "cannot be read"),
    "no opt_state": ("opt_state", lambda step: shutil.rmtree(step / "opt_state"), "is missing"),
    "no data": ("data", lambda step: shutil.rmtree(step / "data"), "is missing"),
    "torn data": ("data", lambda step: truncate(step / "data" / "metadata", 10),
                  "cannot be read"),
    "params metadata": ("params", lambda step: truncate(step / "params" / "_METADATA", 50),
                        "has unreadable metadata"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_step_is_set_aside(trained, tmp_path, damage):
    item, apply, problem = DAMAGE[damage]
    run = copy_run(trained, tmp_path)
    apply(run / "6")
    damaged, older = snapshot(run / "6"), snapshot(run / "3")
    restored = restore(run)
    assert int(restored.state.step) == 3
    assert restored.data_state == {"batches_consumed": 3}
    [note] = restored.notes
    assert f"step 6 in {run} cannot be restored: its {item} {problem}" in note
    assert not (run / "6").exists() and snapshot(run / "corrupt" / "6") == damaged
    assert snapshot(run / "3") == older
    from flan_jax.interop.common import flatten
    ours, reference = flatten(restored.state.params), params(trained / "3")
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(np.asarray(ours[key]), value, err_msg=key)


def test_no_step_restores_and_nothing_is_moved(trained, tmp_path):
    from flan_jax.interop.common import CheckpointError

    run = copy_run(trained, tmp_path)
    shutil.rmtree(run / "6" / "opt_state")
    truncate(largest_file(run / "3" / "params"))
    before = snapshot(run)
    with pytest.raises(CheckpointError) as raised:
        restore(run)
    message = str(raised.value)
    assert "step 6: opt_state is missing" in message
    assert "step 3: params cannot be read (OUT_OF_RANGE" in message
    assert "nothing was moved or deleted" in message
    assert snapshot(run) == before and not (run / "corrupt").exists()


def test_other_optimizer_settings_are_refused_not_set_aside(trained, tmp_path):
    from flan_jax.interop.common import CheckpointError

    run = copy_run(trained, tmp_path)
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="different optimizer settings") as raised:
        restore(run, momentum=0.9)  # an optimizer state with a first moment too
    assert "/opt_state: " in str(raised.value) and "  - missing " in str(raised.value)
    assert snapshot(run) == before


def test_disk_full_stops_and_keeps_the_last_step(workdir, trained, tmp_path):
    used = sum(p.stat().st_size for p in trained.rglob("*") if p.is_file())
    with small_filesystem(tmp_path / "disk", used + 2_000_000) as mounted:
        run = copy_run(trained, tmp_path / "disk")
        if mounted:  # fill the disk up to 100 kB, less than one checkpoint
            free = shutil.disk_usage(run).free
            (tmp_path / "disk" / "filler").write_bytes(b"\0" * (free - 100_000))
            prelude = ""
        else:  # the same disk as the filesystem reports it
            prelude = ("import shutil\nreal = shutil.disk_usage\n"
                       "shutil.disk_usage = lambda p: real(p)._replace(free=100_000)")
        result = train(workdir, run, "TRAIN_STEPS=9", prelude=prelude)
        assert result.returncode == 1, result.stderr[-3000:]
        text = messages(result)
        assert f"flan_jax.train: cannot save checkpoint step 9 in {run}: not enough space" in text
        assert "free on that filesystem" in text and "step 6, is kept" in text
        assert len(text.split("flan_jax.train: ")[1].splitlines()) == 1  # one paragraph
        assert sorted(p.name for p in run.iterdir() if p.name.isdigit()) == ["3", "6"]
        assert_same_params(run / "6", trained / "6")
        assert [r["step"] for r in records(run)][-1] == 9  # every line whole
        assert restore(run).data_state == {"batches_consumed": 6}


def _tiny_state(step: int):
    import jax

    from flan_jax.models.config import get_config
    from flan_jax.training import optimizers
    from flan_jax.training.step import init_train_state

    config = get_config("tiny")
    state = init_train_state(config, optimizers.make_optimizer(learning_rate=0.01),
                             jax.random.key(0))
    return config, state._replace(step=jax.numpy.asarray(step))


def test_save_into_a_read_only_directory_stops_cleanly(tmp_path):
    from flan_jax.training.checkpoints import CheckpointSaveError, TrainCheckpoints

    config, state = _tiny_state(1)
    run = tmp_path / "run"
    checkpoints = TrainCheckpoints(run, config, period=1, keep=1)
    checkpoints.save(state, {"batches_consumed": 1})
    checkpoints.wait()
    with read_only(run) as reason, pytest.raises(CheckpointSaveError) as raised:
        checkpoints.save(state._replace(step=state.step + 1), {"batches_consumed": 2})
    assert str(raised.value).startswith(
        f"cannot save checkpoint step 2 in {run}: the directory is not writable: ")
    assert f"({reason}); " in str(raised.value)
    assert "the last good checkpoint, step 1, is kept" in str(raised.value)
    checkpoints.close()
    assert sorted(p.name for p in run.iterdir() if p.name.isdigit()) == ["1"]
    assert params(run)["encoder/encoder_norm/scale"].shape == (config.d_model,)


def test_disk_filling_up_during_a_write_keeps_the_previous_step(tmp_path):
    """Room for the arrays but not for orbax's metadata: the write itself fails."""
    import jax

    from flan_jax.training.checkpoints import CheckpointSaveError, TrainCheckpoints

    config, state = _tiny_state(1)
    # Random bits do not compress: the step takes its arrays' bytes plus orbax's metadata.
    rng = np.random.default_rng(0)
    state = jax.tree_util.tree_map(lambda x: jax.numpy.asarray(rng.integers(
        0, 2**32, x.shape, dtype=np.uint32).view(np.float32)) if x.dtype == np.float32 else x,
        state)
    arrays = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(
        (state.params, state.opt_state)))
    with small_filesystem(tmp_path / "disk", 3 * arrays + 1_000_000) as mounted:
        if not mounted:
            pytest.skip("needs a small tmpfs (mount, as root)")
        run = tmp_path / "disk" / "run"
        checkpoints = TrainCheckpoints(run, config, period=1, keep=1)
        checkpoints.save(state, {"batches_consumed": 1})
        checkpoints.wait()
        free = shutil.disk_usage(run).free
        (tmp_path / "disk" / "filler").write_bytes(b"\0" * (free - arrays - 10_000))
        with pytest.raises(CheckpointSaveError) as raised:
            checkpoints.save(state._replace(step=state.step + 1), {"batches_consumed": 2})
            checkpoints.close()
        assert str(raised.value).startswith(f"cannot save checkpoint step 2 in {run}: No space "
                                            "left on device (ENOSPC); ")
        assert "the last good checkpoint, step 1, is kept" in str(raised.value)
        checkpoints.close()  # the failure is not reported twice
        assert sorted(p.name for p in run.iterdir() if p.name.isdigit()) == ["1"]  # keep=1
        assert params(run)["encoder/encoder_norm/scale"].shape == (config.d_model,)


# -- the run directory ------------------------------------------------------------------------

def test_read_only_model_dir(workdir, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    before = snapshot(run)
    with read_only(run) as reason:
        result = train(workdir, run)
    assert result.returncode == 2
    assert f"flan_jax.train: MODEL_DIR {run} is not writable: " in messages(result)
    assert f"({reason})" in result.stderr
    assert snapshot(run) == before


def test_model_dir_of_another_model_is_refused_before_writing(workdir, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    before = snapshot(run)
    result = train(workdir, run, "t5.T5Config.d_model=48")
    assert result.returncode == 2
    text = messages(result)
    assert "config disagreement on d_model: expected 48, checkpoint has 32" in text
    assert "encoder/layers_0/attention/query/kernel" in text
    assert "In call to configurable" not in text
    assert snapshot(run) == before  # config.gin included


def test_convert_refuses_a_training_run(trained, tmp_path, capsys):
    from flan_jax import convert
    from flan_jax.interop.checkpoints import detect_format, load_any
    from flan_jax.interop.common import CheckpointError

    run = copy_run(trained, tmp_path)
    before = snapshot(run)
    for fmt in ("flan_jax", "hf", "t5x"):
        assert convert.main(["--to", fmt, str(trained / "6"), str(run)]) == 1
        assert f"{run}: is a flan_jax.train run directory (steps 3, 6)" in capsys.readouterr().err
    assert snapshot(run) == before
    # A run that got converted weights before this check: loading it is ambiguous, not silent.
    shutil.copytree(trained / "6" / "params", run / "params")
    for load in (load_any, detect_format):
        with pytest.raises(CheckpointError, match="holds both training steps") as raised:
            load(run)
        assert f"Pass {run / '6'} for the latest training step" in str(raised.value)
    assert_same_params(run / "6", trained / "6")


# -- configuration checked before work, logs that survive a crash ---------------------------

def test_torn_log_typo_macros_and_cut_targets_are_reported(workdir, trained, tmp_path):
    run = copy_run(trained, tmp_path)
    kept = records(run)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "kind": "train", "lo')  # a crash in the middle of a line
    result = train(workdir, run, "BATCH_SIZ=4", "USE_CACHED_TASKS=True",
                   "TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 4}")
    assert result.returncode == 0, result.stderr[-3000:]
    text = messages(result)
    assert (f"{run / 'metrics.jsonl'}: dropped a partial last line (32 characters) left by an "
            "interrupted write") in text
    assert records(run) == kept
    assert "BATCH_SIZ (did you mean BATCH_SIZE?)" in text
    assert "USE_CACHED_TASKS (a t5x macro that flan_jax.train does not read; bind " \
           "train.use_cached instead)" in text
    # The cut targets, counted independently: byte vocabulary = one id per UTF-8 byte + EOS.
    import seqio

    import flan_jax.catalog  # noqa: F401
    task = seqio.get_mixture_or_task("demo_comparison_zs_opt")
    lengths = [len(ex["targets_pretokenized"]) + 1 for ex in task.get_dataset(
        None, split="train", shuffle=False).take(32).as_numpy_iterator()]
    cut = sum(n > 4 for n in lengths)
    assert cut
    share = f"{100 * cut / 32:.1f}%"
    assert (f"targets cut in {share} of 32 examples (longest {max(lengths)} > 4 tokens)"
            in text.split("demo_comparison_zs_opt: ")[1])
    assert f"raise TASK_FEATURE_LENGTHS['targets'] to at least {max(lengths)}" in text
    report = json.loads((run / "truncation.json").read_text())
    assert report["tasks"]["demo_comparison_zs_opt"]["targets"] == {
        "cut": cut, "longest": max(lengths)}


def test_vocabulary_mismatch_stops_before_work(workdir, tmp_path):
    run = tmp_path / "run"
    result = train(workdir, run, "t5.T5Config.vocab_size=128")
    assert result.returncode == 2
    assert ("task demo_comparison_zs_opt's inputs vocabulary (ByteVocabulary) has 259 token "
            "ids but the model's vocab_size is 128") in messages(result)
    assert "--gin.t5.T5Config.vocab_size=384" in result.stderr
    assert not run.exists()


def test_non_finite_loss_message():
    from flan_jax.train import non_finite_message

    first = non_finite_message(float("nan"), 1, None, Path("/runs/x"), 0.01)
    assert "no checkpoint was saved in /runs/x yet" in first
    assert "the learning rate is not the cause" in first and "None" not in first
    assert first.endswith("Then run the same command to start again.")
    # Resumed at step 6: the restored parameters come from an update never evaluated.
    resumed = non_finite_message(float("inf"), 7, 6, Path("/runs/x"), 0.01)
    assert "the last good checkpoint is step 6 in /runs/x" in resumed
    assert "updated 6 time(s)" in resumed and "lower the learning rate (now 0.01)" in resumed


def test_a_bad_line_inside_a_log_is_not_dropped(tmp_path):
    from flan_jax.training.run_dir import RunDirError, read_jsonl

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(RunDirError, match="line 2: not a JSON record"):
        read_jsonl(log)
    log.write_text('{"step": 1}\n{"step": 2}\n')
    assert read_jsonl(log) == ([{"step": 1}, {"step": 2}], None)


def test_abandoned_orbax_reads_are_quiet_and_others_are_not():
    """After a damaged step is reported, orbax's abandoned read coroutines raise again when
    collected; those are dropped, any other unraisable error still reaches the hook."""
    from types import SimpleNamespace

    from flan_jax.training.checkpoints import _quiet_abandoned_io

    def raised_in(filename: str) -> SimpleNamespace:
        code = compile("raise OSError('read failed')", filename, "exec")
        try:
            exec(code)
        except OSError as e:
            return SimpleNamespace(exc_value=e, exc_traceback=e.__traceback__)

    seen = []
    hook = _quiet_abandoned_io(seen.append)
    hook(raised_in("/site-packages/orbax/checkpoint/_src/serialization/serialization.py"))
    hook(SimpleNamespace(exc_value=RuntimeError("Event loop is closed"), exc_traceback=None))
    assert seen == []
    ours = raised_in("/site-packages/flan_jax/training/step.py")
    hook(ours)
    assert seen == [ours]


def test_asyncio_logs_of_abandoned_orbax_futures_are_quiet_and_others_are_not():
    """asyncio logs "Future exception was never retrieved" (ERROR, the exception in
    exc_info) for an abandoned orbax read future when it is collected: dropped; the same
    log for an exception raised elsewhere is kept."""
    import logging

    from flan_jax.training.checkpoints import _FILTER

    def record(filename: str) -> logging.LogRecord:
        try:
            exec(compile("raise Exception('reading array index failed')", filename, "exec"))
        except Exception as e:
            exc_info = (type(e), e, e.__traceback__)
        return logging.LogRecord("asyncio", logging.ERROR, "base_events.py", 1,
                                 "Future exception was never retrieved", None, exc_info)

    assert not _FILTER.filter(record("/site-packages/orbax/checkpoint/_src/serialization/"
                                     "serialization.py"))
    assert _FILTER.filter(record("/site-packages/flan_jax/training/step.py"))
