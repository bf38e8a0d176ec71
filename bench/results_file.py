"""What the benchmarks share: bench/results.md, where each one replaces only its own "## ..." section, the
machine line and a timer."""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

from maskclip.atomic import atomic_write

RESULTS = Path(__file__).resolve().parent / "results.md"
TITLE = "# Benchmark results\n"


def timed(fn, repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def machine_line() -> str:
    import os

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {os.cpu_count()} CPU cores, {device}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def write_section(heading: str, body: str, path: Path = RESULTS) -> None:
    """Replace the section starting with `heading` (up to the next '## ' heading), or append it."""
    text = path.read_text() if path.exists() else TITLE
    section = f"{heading}\n\n{body.strip()}\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    with atomic_write(path, "w") as f:  # several benchmarks share the file
        f.write(text)
    print(f"written to {path}: {heading}", file=sys.stderr)
