"""`maskclip train` / `maskclip refine` as processes: SIGTERM -> cancelled + resumable, torchrun (gloo) smoke."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from test_train import H, W, make_project

TINY = ["--iters", "4", "--batch-size", "2", "--student", "lraspp_mobilenet_v3_large", "--no-imagenet",
        "--crop-size", "48", "--base-size", "48", "--device", "cpu"]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.pop("WORLD_SIZE", None)
    return e


def maskclip(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "maskclip", *map(str, args)], env=env(), capture_output=True,
                          text=True, timeout=timeout)


def test_sigterm_leaves_a_valid_checkpoint_then_resume_finishes(tmp_path):
    project = make_project(tmp_path)
    run = tmp_path / "run"
    args = [*TINY, "--iters", "100000", "--checkpoint-every", "100000", "--log-every", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "maskclip", "train", str(project.root), "--run", str(run), *args],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                progress = json.loads((run / "progress.json").read_text())
            except (OSError, ValueError):
                progress = {}
            if progress.get("iteration", 0) >= 3:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    progress = json.loads((run / "progress.json").read_text())
    assert progress["state"] == "cancelled" and progress["iteration"] >= 3
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["iteration"] == progress["iteration"]

    done = maskclip("train", project.root, "--run", run, "--resume", "--iters", progress["iteration"] + 2)
    assert done.returncode == 0, done.stderr
    assert f"resuming at iteration {progress['iteration']}" in done.stderr
    final = json.loads((run / "progress.json").read_text())
    assert final["state"] == "done" and final["iteration"] == progress["iteration"] + 2
    # the resumed run kept the saved settings (log every iteration) and the cached pseudo labels
    assert "computing MaskCLIP pseudo labels" not in done.stderr
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["iteration"] for ln in lines] == list(range(1, final["iteration"] + 1))

    refined = maskclip("refine", project.root, "--run", run, "--device", "cpu")
    assert refined.returncode == 0, refined.stderr
    assert json.loads(refined.stdout)["refined"] == 4


def test_user_errors_are_one_line(tmp_path):
    project = make_project(tmp_path)
    res = maskclip("train", project.root, "--run", tmp_path / "run", *TINY, "--student", "vgg")
    assert res.returncode == 2 and "unknown student 'vgg'" in res.stderr and "Traceback" not in res.stderr
    res = maskclip("train", project.root, "--run", tmp_path / "run2", *TINY, "--clip-decoder", "huge")
    assert res.returncode == 2 and "--clip-decoder" in res.stderr and "Traceback" not in res.stderr
    res = maskclip("refine", project.root, "--run", tmp_path / "nothing")
    assert res.returncode == 2 and "run `maskclip train` first" in res.stderr


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_torchrun_two_process_gloo_smoke(tmp_path):
    project = make_project(tmp_path)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "maskclip", "train", str(project.root), "--run-dir", str(run), *TINY, "--log-every", "2"]
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2
    progress = json.loads((run / "progress.json").read_text())
    assert progress["state"] == "done" and progress["iteration"] == 4 and progress["world_size"] == 2
    assert len(list((run / "teacher").glob("*.npz"))) == 4  # both shards of the pseudo labels were written
    # only rank 0 wrote the run files: one log line per logged iteration, not two
    assert [json.loads(ln)["iteration"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    state = torch.load(run / "student.pt", weights_only=False)
    assert not any(k.startswith("module.") for k in state["model"])  # plain weights, loadable without DDP
    assert np.isfinite(progress["loss"]) and (H, W) == (48, 64)
