"""Build ``build/devtree/pilothouse``: the installed namespace as symlinks.

mypy and import-linter find modules by walking directories; they cannot follow
setuptools' editable import hook. This tree mirrors what ``pip install`` lays
out (see ``pilothouse_layout.py``) with symlinks, so both tools see
``pilothouse.services.scheduler`` where Python does.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pilothouse_layout import PACKAGE_DIRS  # noqa: E402


def build(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    top = dest / "pilothouse"
    top.mkdir(parents=True)
    for entry in (ROOT / PACKAGE_DIRS["pilothouse"]).iterdir():
        if entry.name == "__pycache__":
            continue
        (top / entry.name).symlink_to(entry)
    for package, folder in PACKAGE_DIRS.items():
        if package == "pilothouse":
            continue
        sub = package.split(".", 1)[1]
        (top / sub).symlink_to(ROOT / folder)
    return dest


if __name__ == "__main__":
    print(build(ROOT / "build" / "devtree"))
