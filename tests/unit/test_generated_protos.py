"""The committed pilothouse/gen matches protos/ (a stale copy fails here)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_modules_live_in_the_pilothouse_namespace() -> None:
    from pilothouse.gen.k8s.core.v1 import core_pb2

    assert core_pb2.Pod.DESCRIPTOR.full_name == "k8s.io.api.core.v1.Pod"
    field = core_pb2.PodSpec.DESCRIPTOR.fields_by_name["nodeName"]
    assert field.number == 10
