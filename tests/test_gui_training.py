"""The annotator's "Refine dataset (MaskCLIP+)" section: training and refine as child processes.

The run-folder helpers are tested without a display; the GUI tests (Xvfb via pytest-xvfb) train a
random-weights tiny CLIP teacher + the light LR-ASPP student on three 48 x 64 two-tone images, so a
whole train -> refine round takes seconds on a CPU.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from conftest import two_tone  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from maskclip_napari import _training as T  # noqa: E402

H, W = 48, 64
RUN_TIMEOUT_MS = 120_000
needs_display = pytest.mark.skipif(sys.platform.startswith("linux") and not os.environ.get("DISPLAY"),
                                   reason="no display: install Xvfb so pytest-xvfb can start one")


# ================================================================================================
# Run-folder helpers (no display)
# ================================================================================================
def test_student_choices_match_the_trainer():
    from maskclip.train.loop import TrainConfig
    from maskclip.train.student import STUDENT_NAMES

    names = [name for name, _ in T.student_choices()]
    assert len(names) == len(set(names)) and set(names) == {"auto", *STUDENT_NAMES} and "clip" in names
    assert T.AUTO_STUDENT == TrainConfig().student  # the panel's default is the command line's


def test_metrics_tail_reads_appends_partial_lines_and_rewrites(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = T.MetricsTail(path)
    assert not tail.poll() and tail.records == []
    with open(path, "w") as f:
        f.write(json.dumps({"iteration": 10, "loss": 2.0, "time": 1.0}) + "\n")
        f.write('{"iteration": 20, "lo')  # a record being written
    assert tail.poll() and [r["iteration"] for r in tail.records] == [10]
    assert not tail.poll()
    with open(path, "a") as f:
        f.write('ss": 1.5, "time": 2.0}\n' + json.dumps({"iteration": 30, "loss": float("nan")}) + "\n")
    assert tail.poll() and [r["iteration"] for r in tail.records] == [10, 20]  # NaN skipped
    # a resumed run replaces the file (atomic rewrite without the records after its checkpoint)
    tmp = tmp_path / "new"
    tmp.write_text(json.dumps({"iteration": 10, "loss": 2.0, "time": 1.0}) + "\n")
    os.replace(tmp, path)
    assert tail.poll() and [r["iteration"] for r in tail.records] == [10]
    path.unlink()
    assert tail.poll() and tail.records == []


def test_eta_uses_only_records_of_the_current_process():
    records = [{"iteration": 10, "time": 100.0}, {"iteration": 20, "time": 110.0},  # before a resume
               {"iteration": 30, "time": 500.0}, {"iteration": 40, "time": 502.0}]
    assert T.estimate_eta(records, 100, since=400.0) == pytest.approx(60 * 2 / 10)
    assert T.estimate_eta(records[:1], 100) is None
    assert T.estimate_eta(records, 100) == pytest.approx(60 * 402 / 30)
    assert T.format_duration(12.4) == "12 s" and T.format_duration(250) == "4 min 10 s"
    assert T.format_duration(7500) == "2 h 05 min"


def test_describe_progress():
    assert T.describe_progress(None) == "starting…"
    assert T.describe_progress(None, running=False).startswith("failed")  # killed before its first report
    assert T.describe_progress({"state": "running", "phase": "pseudo-labels", "teacher_done": 2,
                                "teacher_total": 5}) == "teacher pseudo labels 2/5"
    running = {"state": "running", "phase": "guided", "iteration": 30, "total": 200, "loss": 0.51234}
    assert T.describe_progress(running, 65) == "iteration 30/200 · guided · loss 0.512 · ETA 1 min 05 s"
    assert T.describe_progress(dict(running, state="cancelled"), 65).endswith("loss 0.512 · cancelled")


def test_error_summary_drops_traceback_frames_and_progress_bars():
    lines = T.split_output_lines(
        "maskclip train: computing MaskCLIP pseudo labels for 3 image(s)\n"
        "refine:  67%|######6   | 2/3 [00:00<00:00, 17.07image/s]\r"
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    boom()\n"
        "RuntimeError: CUDA out of memory\n")
    assert T.error_summary(lines) == ("maskclip train: computing MaskCLIP pseudo labels for 3 image(s)\n"
                                      "RuntimeError: CUDA out of memory")
    assert T.error_summary([], {"error": "ValueError: bad"}) == "ValueError: bad"
    assert T.error_summary([], None, 3) == "the process ended with exit code 3"
    # refine's progress is its refine_progress.json (nothing is read from stderr)
    assert T.describe_refine_progress(None) == "refining…"
    assert T.describe_refine_progress({"done": 2, "total": 3, "failed": 1}) == "refine 2/3 images · 1 skipped"


def test_run_folders_and_commands(tmp_path):
    first = T.new_run_dir(tmp_path, now=0)
    first.mkdir(parents=True)
    second = T.new_run_dir(tmp_path, now=0)
    assert second.parent == first.parent == tmp_path / "runs" and second.name == first.name + "-2"
    second.mkdir()
    (second / "progress.json").write_text("{}")
    os.utime(first, (1, 1))
    assert T.latest_run(tmp_path) == second
    assert T.read_progress(first) is None and T.read_progress(second) == {}

    args = T.train_arguments(tmp_path, second, model="maskclip-tiny-vit", pretrained=None, device="cpu", iters=5,
                             student="auto", batch_size=2, crop_size=64, base_size=64, imagenet=False)
    assert args[:2] == ["train", str(tmp_path.resolve())]
    assert args[args.index("--pretrained") + 1] == "none" and args[-1] == "--no-imagenet"
    # Resume repeats the run's recorded command; a run started elsewhere resumes from its saved config
    assert T.resume_arguments(tmp_path, second, "cuda") == ["train", str(tmp_path.resolve()), "--run",
                                                             str(second.resolve()), "--device", "cuda", "--resume"]
    (second / T.LAUNCH_FILE).write_text(json.dumps({"train": args}))
    assert T.resume_arguments(tmp_path, second, "cuda") == [*args, "--resume"]

    from maskclip.cli import build_parser  # the commands parse with the real CLI

    parsed = build_parser().parse_args([*args, "--resume"])
    assert (parsed.iters, parsed.pretrained, parsed.no_imagenet, parsed.resume) == (5, "none", True, True)
    assert parsed.guided_fraction is None  # auto: the trainer decides from the backbone's initialisation
    parsed = build_parser().parse_args(T.refine_arguments(tmp_path, second, "cpu"))
    assert parsed.command == "refine" and parsed.device == "cpu"
    args = T.train_arguments(tmp_path, second, model="m", pretrained="openai", device="cpu", iters=5, student="auto",
                             batch_size=2, crop_size=64, base_size=64, imagenet=True,
                             guided_fraction=T.GUIDED_FRACTIONS["half"])
    assert build_parser().parse_args(args).guided_fraction == 0.5 and "--no-imagenet" not in args
    # the panel's "auto" iterations / batch size pass no flag: the command line settles them per student
    args = T.train_arguments(tmp_path, second, model="m", pretrained="openai", device="cpu", iters=None,
                             student="auto", batch_size=None, crop_size=64, base_size=64, imagenet=True)
    parsed = build_parser().parse_args(args)
    assert "--iters" not in args and "--batch-size" not in args and (parsed.iters, parsed.batch_size) == (None, None)


def test_curve_geometry():
    records = [{"iteration": 10, "loss": 2.0}, {"iteration": 20, "loss": 1.0}, {"iteration": 40, "loss": 0.0}]
    pts = T.curve_points(records, 40, 100, 50)
    assert pts == [(25.0, 0.0), (50.0, 25.0), (100.0, 50.0)]
    assert T.loss_range([4.0, 0.1]) == (0.1, 4.0, True)  # spans > 20x: logarithmic
    log_pts = T.curve_points([{"iteration": 1, "loss": 10.0}, {"iteration": 2, "loss": 0.1},
                              {"iteration": 3, "loss": 1.0}], 4, 4, 100)
    assert [round(y) for _, y in log_pts] == [0, 100, 50]


# ================================================================================================
# In the annotator
# ================================================================================================
@pytest.fixture
def image_folder(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the children inherit it: the CPU is shared
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(two_tone(i)).save(folder / f"im{i}.png")
    return folder


def open_annotator(make_napari_viewer, qtbot, folder, iters, student="lraspp_mobilenet_v3_large"):
    """The annotator on `folder` with classes red/blue (no background prompts), a random tiny CLIP, and
    the section set for a seconds-long CPU run."""
    from maskclip_napari._dock import dock_annotator

    viewer = make_napari_viewer()
    widget = dock_annotator(viewer)
    assert widget.open_path(folder), widget.message_text()
    for name in ("red", "blue"):
        widget.class_editor.new_name.setText(name)
        qtbot.mouseClick(widget.class_editor.add_button, Qt.MouseButton.LeftButton)
    widget.project.set_background([])
    widget.show_classes()
    widget.set_model_choice("maskclip-tiny-vit", "random", "cpu")
    widget.scale_spin.setValue(64)
    qtbot.wait(300)  # the settings are saved after the redraw debounce
    section = widget.training
    assert section.student_combo.currentData() == T.AUTO_STUDENT  # the command line's default
    # iterations and batch size start at "auto": no flag, the command line's default for the network
    assert (section.iters_spin.value(), section.batch_spin.value()) == (0, 0)
    assert section.iters_spin.text().startswith("auto (300 clip, 2000")
    section.configure(iters=iters, student=student, device="cpu", batch_size=2, crop_size=48,
                      base_size=48, imagenet=False)
    assert (section.iters_spin.value(), section.student_combo.currentData(), section.crop_spin.value()) == \
        (iters, student, 48)
    return viewer, widget, section


def wait_progress(qtbot, section, condition):
    qtbot.waitUntil(lambda: condition(T.read_progress(section.run_dir) or {}), timeout=RUN_TIMEOUT_MS)


@pytest.mark.gui
@needs_display
def test_train_then_refine_updates_labels_and_keeps_verified(make_napari_viewer, qtbot, image_folder):
    viewer, widget, section = open_annotator(make_napari_viewer, qtbot, image_folder, iters=12)
    project = widget.project
    first = widget.current_id
    labels = viewer.layers["labels"]
    labels.data[:, :8] = 1  # a strip painted "red", also over the blue half: verified, must survive
    widget.save_current(wait=True)
    verified = project.get_verified(first)
    assert verified[:, :8].all() and verified.sum() == H * 8
    assert section.resume_button.isEnabled() is False and section.refine_button.isEnabled() is False

    qtbot.mouseClick(section.start_button, Qt.MouseButton.LeftButton)
    assert section.running and section.stage == "train"
    assert not section.start_button.isEnabled() and section.cancel_button.isEnabled()
    assert section.run_dir.parent == project.root / "runs"
    # the viewer keeps working while the child trains: the event loop is free
    t0 = time.perf_counter()
    widget.next_image()
    widget.previous_image()
    assert time.perf_counter() - t0 < 2.0
    qtbot.waitUntil(lambda: section.refine_summary is not None and not section.running, timeout=RUN_TIMEOUT_MS)

    progress = T.read_progress(section.run_dir)
    assert progress["state"] == "done" and progress["iteration"] == 12
    assert (section.run_dir / "student.pt").is_file()
    assert section.refine_summary["refined"] == 3
    refined = T.read_refine_progress(section.run_dir)  # refine's progress, as the panel polled it
    assert (refined["state"], refined["done"], refined["total"], refined["failed"]) == ("done", 3, 3, 0)
    assert "Refined 3 images" in section.message.text()
    assert "Refined 3 images" in widget.message_text()  # on the message line too (issue 22)
    # the loss curve holds every logged iteration (log every 10, and the last)
    assert [r["iteration"] for r in section.plot.records] == [10, 12] and section.plot.total == 12
    assert section.progress_bar.value() == 12 and "12/12" in section.status_label.text()
    # refine ran and the annotator shows its labels: every pixel labelled now, the verified strip kept
    shown = viewer.layers["labels"].data
    assert (shown != 0).all()
    assert (shown[:, :8] == 1).all()
    np.testing.assert_array_equal(project.get_verified(first), verified)
    np.testing.assert_array_equal(shown, project.get_labels(first).astype(shown.dtype) + 1)
    assert project.history(first)[-1]["source"].startswith("maskclip+ refine")
    for row, image_id in enumerate(project.image_ids):
        assert widget.image_list.item(row).text().startswith(f"{image_id}   100% labelled")
    assert section.refine_button.isEnabled() and not section.resume_button.isEnabled()


@pytest.mark.gui
@needs_display
def test_clip_student_trains_from_the_button_then_refines(make_napari_viewer, qtbot, image_folder):
    """The panel offers the clip student (the teacher's own CLIP tower); Start trains it a few iterations and
    refines, the Refine button refines again, and the verified pixels stay as painted through both."""
    viewer, widget, section = open_annotator(make_napari_viewer, qtbot, image_folder, iters=3, student="clip")
    project = widget.project
    first = widget.current_id
    viewer.layers["labels"].data[-6:, :] = 2  # a strip painted "blue" along the bottom: verified
    widget.save_current(wait=True)
    verified, painted = project.get_verified(first), project.get_labels(first)
    assert verified.sum() == 6 * W

    qtbot.mouseClick(section.start_button, Qt.MouseButton.LeftButton)
    assert section.running and section.stage == "train"
    qtbot.waitUntil(lambda: section.refine_summary is not None and not section.running, timeout=RUN_TIMEOUT_MS)
    progress = T.read_progress(section.run_dir)
    assert (progress["state"], progress["iteration"]) == ("done", 3)
    assert json.loads((section.run_dir / "config.json").read_text())["train"]["student"] == "clip"
    assert section.refine_summary["refined"] == 3
    assert all(project.has_labels(i) for i in project.image_ids)

    section.refine_summary = None
    qtbot.mouseClick(section.refine_button, Qt.MouseButton.LeftButton)
    assert section.running and section.stage == "refine"
    qtbot.waitUntil(lambda: section.refine_summary is not None and not section.running, timeout=RUN_TIMEOUT_MS)
    assert section.refine_summary["refined"] == 3 and not section.refine_summary["failed"]
    np.testing.assert_array_equal(project.get_verified(first), verified)
    np.testing.assert_array_equal(project.get_labels(first)[verified], painted[verified])
    assert project.history(first)[-1]["source"].startswith("maskclip+ refine")


@pytest.mark.gui
@needs_display
def test_cancel_then_resume_in_the_same_run(make_napari_viewer, qtbot, image_folder):
    import torch

    viewer, widget, section = open_annotator(make_napari_viewer, qtbot, image_folder, iters=200)
    qtbot.mouseClick(section.start_button, Qt.MouseButton.LeftButton)
    run = section.run_dir
    wait_progress(qtbot, section, lambda p: p.get("iteration", 0) >= 10)
    qtbot.mouseClick(section.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not section.running, timeout=RUN_TIMEOUT_MS)
    progress = T.read_progress(run)
    stopped = progress["iteration"]
    assert progress["state"] == "cancelled" and 10 <= stopped < 200, progress
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["iteration"] == stopped
    assert f"Cancelled at iteration {stopped}/200" in section.message.text()
    assert section.resume_button.isEnabled() and not section.refine_button.isEnabled()
    assert section.refine_summary is None
    assert not any(widget.project.has_labels(i) for i in widget.project.image_ids)  # nothing refined

    # reopening the project shows the cancelled run, ready to resume
    widget.open_project(widget.project)
    assert section.run_dir == run and "Resume continues it" in section.status_label.text()
    assert section.plot.records and section.plot.records[-1]["iteration"] == stopped

    qtbot.mouseClick(section.resume_button, Qt.MouseButton.LeftButton)
    assert section.running and section.run_dir == run
    qtbot.waitUntil(lambda: section.refine_summary is not None and not section.running, timeout=RUN_TIMEOUT_MS)
    final = T.read_progress(run)
    assert final["state"] == "done" and final["iteration"] == 200
    assert [p.name for p in (widget.project.root / "runs").iterdir()] == [run.name]
    iterations = [json.loads(ln)["iteration"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 200 and stopped in iterations
    assert all(widget.project.has_labels(i) for i in widget.project.image_ids)


@pytest.mark.gui
@needs_display
def test_failure_shows_the_error_not_a_traceback(make_napari_viewer, qtbot, image_folder, tmp_path):
    viewer, widget, section = open_annotator(make_napari_viewer, qtbot, image_folder, iters=5)
    widget.set_model_choice(weights=str(tmp_path / "missing-weights.pt"))
    qtbot.mouseClick(section.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not section.running, timeout=RUN_TIMEOUT_MS)
    text = section.message.text()
    assert text.startswith("Training failed:") and "missing-weights.pt" in text, text
    assert "Traceback" not in text and "File \"" not in text
    assert widget.message_text() == text and viewer.status == text  # where every other message goes (issue 22)
    assert T.read_progress(section.run_dir)["state"] == "failed"
    assert section.start_button.isEnabled() and section.resume_button.isEnabled()


@pytest.mark.gui
@needs_display
def test_closing_the_viewer_cancels_training_and_reaps_the_child(make_napari_viewer, qtbot, image_folder):
    viewer, widget, section = open_annotator(make_napari_viewer, qtbot, image_folder, iters=100_000)
    qtbot.mouseClick(section.start_button, Qt.MouseButton.LeftButton)
    run = section.run_dir
    pid = section.process_id
    wait_progress(qtbot, section, lambda p: p.get("iteration", 0) >= 10)
    viewer.close()
    with pytest.raises(ProcessLookupError):  # exited and reaped: not even a zombie is left
        os.kill(pid, 0)
    progress = T.read_progress(run)
    assert progress["state"] == "cancelled"
    assert (run / "checkpoints" / "last.pt").is_file()


@needs_display
def test_refine_progress_comes_from_the_run_folder(qtbot, tmp_path):
    """While refine runs, the panel shows RUN_DIR/refine_progress.json; a file of an earlier refine is not shown."""
    from maskclip.run_folder import RunFolder

    from maskclip_napari._session import ModelChoice

    section = T.TrainingSection(lambda: ModelChoice())
    qtbot.addWidget(section)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_refine_progress(done=5, total=5, state="done", started=time.time() - 60)
    section.run_dir, section.stage, section.started_at = run.path, "refine", time.time()  # as when refine starts
    section.poll()
    assert "5/5" not in section.status_label.text()  # the earlier refine's file
    run.write_refine_progress(done=2, total=4, failed=1, started=time.time())
    section.poll()
    bar = section.progress_bar
    assert (bar.value(), bar.maximum(), bar.format()) == (2, 4, "refine %v/%m images")
    assert section.status_label.text() == "refine 2/4 images · 1 skipped"


@pytest.mark.gui
@needs_display
def test_refine_that_skipped_images_reports_them_and_keeps_the_rest(make_napari_viewer, qtbot, image_folder):
    """`maskclip refine` exits 1 with a summary when it skipped unreadable images: the section shows the
    refined count and names the skipped images instead of calling the whole run failed."""
    viewer, widget, section = open_annotator(make_napari_viewer, qtbot, image_folder, iters=2)
    summary = {"refined": 2, "stale_skipped": [], "failed": [{"id": "broken", "reason": "unreadable"}],
               "changed_pixels": 5, "classes": ["red", "blue"]}
    section.show_refine_result(1, "log line\n" + json.dumps(summary) + "\n", crashed=False)
    text = section.message.text()
    assert "Refined 2 images" in text and "Skipped 1 unreadable: broken" in text
    assert section.refine_summary == summary
    section.show_refine_result(1, "no summary\n", crashed=False)
    assert "Refining failed" in section.message.text()
