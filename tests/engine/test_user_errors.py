"""A user's mistake or a full or read-only disk ends the command with one line naming the thing, exit 2, no
traceback (``--debug`` shows it)."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
from pathlib import Path

import pytest
import torch

from .conftest import run_cli, tiny_overrides

pytestmark = pytest.mark.slow


def _one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_config_mistakes(tiny_data, tmp_path):
    run = tiny_overrides(tiny_data, tmp_path / "run")
    _one_line_error(run_cli("train", "synthetic-tiny", *run, "train.log_every=0"), "train.log_every=0")
    _one_line_error(run_cli("train", "synthetic-tiny", *run, "model.options.foo=1"), "unknown model argument(s) foo")
    assert not (tmp_path / "run").exists()


def test_checkpoint_mistakes(tiny_data, tmp_path):
    video = str(next((tiny_data / "videos").rglob("*.mp4")))
    truncated = tmp_path / "k400.pyth"
    torch.save({"model_state": {"w": torch.zeros(1000)}, "cfg": "{}"}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    _one_line_error(run_cli("predict", video, "--checkpoint", str(truncated)), str(truncated), "cannot be read")
    _one_line_error(run_cli("predict", video, "--checkpoint", str(tmp_path)), "is a folder")
    top_k = run_cli("predict", video, "--checkpoint", str(truncated), "--top-k", "-3")
    assert top_k.returncode == 2 and "not a positive number" in top_k.stderr
    debug = run_cli("--debug", "predict", video, "--checkpoint", str(tmp_path))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_an_unsafe_image_vit_file_is_refused(tiny_data, tmp_path):
    unsafe = tmp_path / "vit.pth"
    torch.save({"model": {}, "args": argparse.Namespace(lr=1)}, unsafe)
    done = run_cli("train", "synthetic-tiny", *tiny_overrides(tiny_data, tmp_path / "run", f"model.init={unsafe}"))
    _one_line_error(done, str(unsafe), "refused")


def test_annotation_bytes_that_are_not_utf8(tiny_data, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("classes.txt", "val.csv"):
        (root / name).write_bytes((tiny_data / name).read_bytes())
    (root / "videos").symlink_to(tiny_data / "videos")
    (root / "train.csv").write_bytes((tiny_data / "train.csv").read_bytes() + b"videos/caf\xe9.mp4 0\n")
    done = run_cli("train", "synthetic-tiny", *tiny_overrides(root, tmp_path / "run"))
    _one_line_error(done, "train.csv:21: not UTF-8 text")


@contextlib.contextmanager
def _mounted(folder: Path, *options: str):
    """A 1 MB tmpfs at ``folder`` (skips the test where mounting is not allowed)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=1m", *options)), "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_named(tiny_data, tmp_path):
    with _mounted(tmp_path / "small") as small:
        done = run_cli("train", "synthetic-tiny", *tiny_overrides(tiny_data, small / "run", "model.options.depth=4",
                                                                  "model.options.embed_dim=128"))
        _one_line_error(done, "no space left on the device while writing", str(small / "run"))


def test_a_read_only_output_folder_is_named(tiny_data, tmp_path):
    with _mounted(tmp_path / "read-only", "ro") as read_only:
        done = run_cli("train", "synthetic-tiny", *tiny_overrides(tiny_data, read_only / "run"))
        _one_line_error(done, str(read_only / "run"), "Read-only file system")
