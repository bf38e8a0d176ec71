"""The annotator's edit writer (save thread): a failed write's pixels are sent again by the next write."""
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("qtpy")

from maskclip.project import Project  # noqa: E402
from maskclip_napari._saving import EditWriter  # noqa: E402


def test_a_write_queued_behind_a_failed_one_sends_both_edits(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "src" / "a.png")
    project = Project.create(tmp_path / "proj", tmp_path / "src", ["road", "car"])
    base = project.get_labels_and_verified("a")
    first = (base[0].copy(), base[1].copy())
    first[0][0, 0], first[1][0, 0] = 1, True
    second = (first[0].copy(), first[1].copy())  # queued before the failure was known: its base is `first`
    second[0][7, 7], second[1][7, 7] = 0, True
    writer = EditWriter()
    real = Project.set_labels
    monkeypatch.setattr(Project, "set_labels", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        writer.write(project, "a", *first, base, "stroke 1")
    monkeypatch.setattr(Project, "set_labels", real)
    saved = writer.write(project, "a", *second, first, "stroke 2")
    labels, verified = Project.open(tmp_path / "proj").get_labels_and_verified("a")
    assert labels[0, 0] == 1 and labels[7, 7] == 0 and verified.sum() == 2
    np.testing.assert_array_equal(saved.stored, labels)
