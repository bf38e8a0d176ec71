"""Made tests/data/golden_project (+ golden_project_expected.npz/.json) once, with the code of 2026-12 (project
format version 1). tests/test_golden_project.py reads it back; do NOT re-run this to make a failing test pass:
the point is that today's files keep reading the same.

    PYTHONPATH=src python tests/data/make_golden_project.py
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "golden_project"
H, W = 24, 32


def _images(folder: Path) -> None:
    rng = np.random.default_rng(21)
    for name in ("alpha", "beta", "gamma"):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{name}.png")


def main() -> None:
    from maskclip.project import Project

    if OUT.exists():
        shutil.rmtree(OUT)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        _images(src)
        p = Project.create(OUT, src, ["road", ["car", "vehicle"], "tree"], copy=True, background=["sky", "wall"],
                           history=20)
    ids = p.image_ids
    assert ids == ["alpha", "beta", "gamma"], ids
    a, b, c = ids
    # alpha: prediction, a paint stroke (verified), an erased block verified as confirmed background, another
    # prediction (verified pixels kept; confirmed background stays unlabelled), a low-confidence prediction
    pred = np.zeros((H, W), np.uint8)
    pred[:, 10:20] = 1
    pred[:, 20:] = 2
    p.merge_prediction(a, pred)
    labels = p.get_labels(a)
    labels[2:6, 2:8] = 1
    p.set_labels(a, labels, mark_changed_verified=True)
    labels = p.get_labels(a)
    labels[12:18, 22:30] = 255
    p.set_labels(a, labels, mark_changed_verified=True)
    p.merge_prediction(a, np.full((H, W), 2, np.uint8))
    conf = np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))
    p.merge_prediction(a, np.full((H, W), 0, np.uint8), conf, min_confidence=0.5, source="refine")
    # beta: named-class prediction (background prompt -> 255), explicit verified mask, set_verified
    seg = np.zeros((H, W), np.int64)
    seg[H // 2:] = 1
    seg[:, :4] = 3  # "sky" (a background prompt the project does not have as a class)
    p.merge_prediction(b, seg, class_names=["road", "car", "tree", "sky"])
    labels = p.get_labels(b)
    labels[0:4, 8:16] = 2
    verified = np.zeros((H, W), bool)
    verified[0:4, 8:16] = True
    p.set_labels(b, labels, verified, source="manual")
    v = p.get_verified(b)
    v[20:, 28:] = True
    p.set_verified(b, v)
    # gamma: one prediction, then cleared (labels gone, history kept)
    p.merge_prediction(c, np.full((H, W), 1, np.uint8))
    p.clear_labels(c)
    # classes: add one and paint it (verified), rename one, remove one (its pixels -> 255, unverified)
    p.add_class("water", ["lake"], colour=(0, 0, 200))
    labels = p.get_labels(a)
    labels[20:, :6] = p.class_index("water")
    p.set_labels(a, labels, mark_changed_verified=True)
    p.rename_class("tree", "plant")
    p.remove_class("car")
    p.set_class_synonyms("road", ["street"])
    p.update_settings({"method": {"pd_threshold": 0.4}})
    p.flush()

    q = Project.open(OUT)
    expected = {}
    meta = {"image_ids": q.image_ids, "class_names": q.class_names, "class_colours": [list(c) for c in q.class_colours],
            "prompts": q.prompts, "background": q.background, "settings": q.settings,
            "status": {k: v for k, v in q.status().items() if k != "project"},
            "class_pixel_counts": q.class_pixel_counts(), "class_verified_counts": q.class_pixel_counts(True),
            "history": {}, "image_state": {}}
    for i in q.image_ids:
        labels, verified = q.get_labels_and_verified(i)
        expected[f"{i}/labels"] = labels
        expected[f"{i}/verified"] = verified
        meta["history"][i] = q.history(i)
        s = q.image_state(i)
        meta["image_state"][i] = {"rev": s.rev, "labelled_pixels": s.labelled_pixels,
                                  "verified_pixels": s.verified_pixels, "status": s.status, "stale": s.stale,
                                  "verified_background_pixels": s.verified_background_pixels,
                                  "labelled_fraction": s.labelled_fraction, "verified_fraction": s.verified_fraction}
        for h in meta["history"][i]:
            rl, rv = q.get_revision(i, h["rev"])
            expected[f"{i}/r{h['rev']}/labels"] = rl
            expected[f"{i}/r{h['rev']}/verified"] = rv
        expected[f"{i}/image"] = q.get_image(i)
    np.savez_compressed(HERE / "golden_project_expected.npz", **expected)
    (HERE / "golden_project_expected.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
