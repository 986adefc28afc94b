"""Package discovery for the design card's layout.

The card's top-level folders (``services/``, ``runtime_shim/``,
``cloud_controller/``) live beside ``pilothouse/`` in the repository but install
into the one ``pilothouse`` import namespace. The mapping lives in
``pilothouse_layout.py`` so that the dev tools (mypy, import-linter) and the
build agree on it.
"""

import sys
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pilothouse_layout import PACKAGE_DIRS  # noqa: E402

packages: list[str] = []
for package, folder in PACKAGE_DIRS.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(str(HERE / folder))]

setup(packages=packages, package_dir=PACKAGE_DIRS)
