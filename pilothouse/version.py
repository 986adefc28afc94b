"""``pilothouse version``."""

from __future__ import annotations

import argparse

from pilothouse import KUBERNETES_VERSION, __version__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    print(f"pilothouse {__version__} (Kubernetes API {KUBERNETES_VERSION})")
    return 0
