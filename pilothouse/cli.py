"""The ``pilothouse`` command: one subcommand per component.

Each subcommand lives in its component's module and is imported only when it
is run, so ``pilothouse --help`` stays fast and a component's dependencies are
never loaded by another's process. A component module exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from pilothouse import __version__

# name -> (module, one-line help). Modules are imported lazily.
SUBCOMMANDS: dict[str, tuple[str, str]] = {}


def register(name: str, module: str, help_text: str) -> None:
    SUBCOMMANDS[name] = (module, help_text)


def _known() -> None:
    """The components that have landed; each line is one subcommand."""
    register("version", "pilothouse.version", "print the pilothouse and Kubernetes API versions")
    register("up", "pilothouse.up", "start a whole cluster on this machine")
    register("apiserver", "pilothouse.services.apiserver.server", "run the apiserver")
    register("controller-manager", "pilothouse.services.controllers.manager",
             "run the controllers (ReplicaSet, Deployment, GC, Namespace, ...)")
    register("fake-nodes", "pilothouse.fake_nodes", "run N simulated nodes (KWOK-like)")
    register("runtime-shim", "pilothouse.runtime_shim.cli", "serve the CRI (runtime.v1)")
    register("image", "pilothouse.runtime_shim.images.cli", "build and import local images")
    register("kubelet", "pilothouse.services.kubelet.cli", "run the node agent (kubelet)")
    register("scheduler", "pilothouse.services.scheduler.server", "run the scheduler")


def build_parser() -> argparse.ArgumentParser:
    _known()
    parser = argparse.ArgumentParser(
        prog="pilothouse",
        description="The Kubernetes architecture, real and readable, in Python.",
    )
    parser.add_argument("--version", action="version", version=f"pilothouse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core logs fork() notices at INFO whenever a component starts a child.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-"):
        parser.parse_args(argv)
        parser.print_help()
        return 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join(sorted(SUBCOMMANDS))}")
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    component = argparse.ArgumentParser(prog=f"pilothouse {name}", description=help_text)
    module.add_arguments(component)
    args = component.parse_args(rest)
    result: int = module.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
