"""The storage layer stays torch-free: creating a project must not load the engine (it cost 7-8 s before a
project existed), and the defaults it stores are the engine's (maskclip.defaults)."""
import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

from maskclip.project import DEFAULT_BACKGROUND, DEFAULT_MODEL, DEFAULT_SETTINGS

CREATE = textwrap.dedent("""
    import sys
    from maskclip.project import Project
    p = Project.create(sys.argv[1], sys.argv[2], ["a", "b"])
    p.set_labels(p.image_ids[0], p.get_labels(p.image_ids[0]))
    p.status()
    assert "torch" not in sys.modules, "the storage layer imported torch"
    print(len(p))
""")


def test_project_create_does_not_import_torch(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 10, 3), 40 * i, np.uint8)).save(tmp_path / "src" / f"im{i}.png")
    out = subprocess.run([sys.executable, "-c", CREATE, str(tmp_path / "p"), str(tmp_path / "src")],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_storage_defaults_match_the_engine():
    from maskclip.model import DEFAULT_BACKGROUND as engine_background, load

    assert tuple(DEFAULT_BACKGROUND) == tuple(engine_background)
    assert DEFAULT_MODEL == inspect.signature(load).parameters["model_name"].default
    assert DEFAULT_SETTINGS["model"]["name"] == DEFAULT_MODEL
