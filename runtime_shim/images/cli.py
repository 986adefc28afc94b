"""``pilothouse image``: build the local busybox and pause images, import archives, list.

    pilothouse image build busybox --output busybox.tar
    pilothouse image build pause --output pause.tar
    pilothouse image import busybox.tar --root /var/lib/pilothouse/runtime-shim
    pilothouse image list --root /var/lib/pilothouse/runtime-shim
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pilothouse.runtime_shim.images import oci
from pilothouse.runtime_shim.images.reference import BadReference, parse
from pilothouse.runtime_shim.images.store import ImageError, ImageStore

DEFAULT_ROOT = Path("/var/lib/pilothouse/runtime-shim")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build a small OCI image from busybox-static")
    build.add_argument("kind", choices=["busybox", "pause"])
    build.add_argument("--output", "-o", type=Path, required=True, help="OCI layout tarball")
    build.add_argument("--tag", help=f"image name (default {oci.BUSYBOX_TAG} / {oci.PAUSE_TAG})")
    build.add_argument("--busybox", type=Path, default=oci.DEFAULT_BUSYBOX,
                       help="the static busybox binary (Debian's busybox-static)")
    imp = sub.add_parser("import", help="load an OCI-layout or docker-archive tarball")
    imp.add_argument("archive", type=Path)
    imp.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the runtime shim's root")
    imp.add_argument("--name", action="append", default=None,
                     help="name the image (default: the names inside the archive)")
    imp.add_argument("--containerd", metavar="ADDRESS",
                     help="import into containerd at this socket instead of the shim's store")
    imp.add_argument("--namespace", default="k8s.io", help="containerd namespace")
    ls = sub.add_parser("list", help="list the images in the shim's store")
    ls.add_argument("--root", type=Path, default=DEFAULT_ROOT)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ImageError, BadReference, RuntimeError, OSError) as err:
        print(f"pilothouse image {args.action}: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.action == "build":
        if not args.busybox.exists():
            raise ImageError(f"{args.busybox} not found: install busybox-static")
        tag = str(parse(args.tag)) if args.tag else None
        if args.kind == "busybox":
            image = oci.build_busybox(tag or oci.BUSYBOX_TAG, busybox=args.busybox)
        else:
            image = oci.build_pause(tag or oci.PAUSE_TAG, busybox=args.busybox)
        oci.write_oci_layout(args.output, [image])
        print(f"{image.tag} {image.config_digest} -> {args.output}")
        return 0
    if args.action == "import":
        if not args.archive.exists():
            raise ImageError(f"{args.archive}: no such file")
        if args.containerd:
            from pilothouse.runtime_shim.containerd.images import import_archive_sync

            for name in import_archive_sync(args.containerd, args.namespace, args.archive,
                                            args.name):
                print(name)
            return 0
        store = ImageStore(args.root / "images")
        for record in store.import_archive(args.archive, args.name):
            print(f"{record.id} {' '.join(record.repo_tags)}")
        return 0
    store = ImageStore(args.root / "images")
    for record in store.images():
        print(f"{record.id}  {record.size:>10}  {' '.join(record.repo_tags)}")
    return 0
