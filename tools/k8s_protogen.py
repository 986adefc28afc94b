"""Write ``protos/k8s/**`` from Kubernetes' public protobuf schema.

Kubernetes publishes the protobuf schema of its API types (message names, field
names, numbers and types) in the ``generated.proto`` files of k8s.io/api,
k8s.io/apimachinery and k8s.io/apiextensions-apiserver. Wire compatibility needs
exactly those facts, so this tool reads them from checkouts of those
repositories and writes our own ``.proto`` files: facts only (no comments, no
Go options), our own file layout, package names kept so that descriptors carry
Kubernetes' full message names.

    python tools/k8s_protogen.py --api DIR --apimachinery DIR --apiextensions DIR

Each DIR is a tree (or ``git archive`` extract) of that repository at the
release we track (0.32.x, Kubernetes 1.32). The output is committed; this tool
is only re-run to move to a newer Kubernetes release.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "protos" / "k8s"

# (upstream repository key, path inside it) -> our path under protos/
APIMACHINERY = {
    "pkg/api/resource/generated.proto": "k8s/resource/resource.proto",
    "pkg/apis/meta/v1/generated.proto": "k8s/meta/v1/meta.proto",
    "pkg/runtime/generated.proto": "k8s/runtime/runtime.proto",
    "pkg/runtime/schema/generated.proto": "k8s/runtime/schema/schema.proto",
    "pkg/util/intstr/generated.proto": "k8s/intstr/intstr.proto",
}
API_GROUPS = [
    "core/v1", "apps/v1", "batch/v1", "coordination/v1", "discovery/v1",
    "scheduling/v1", "rbac/v1", "events/v1", "policy/v1", "authorization/v1",
    "authentication/v1", "networking/v1", "storage/v1", "autoscaling/v1",
    "autoscaling/v2", "apidiscovery/v2", "admissionregistration/v1",
    "certificates/v1", "node/v1", "flowcontrol/v1",
]
APIEXTENSIONS = {
    "pkg/apis/apiextensions/v1/generated.proto": "k8s/apiextensions/v1/apiextensions.proto",
}


def _our_path(upstream_import: str) -> str:
    """Map an upstream import path (``k8s.io/api/core/v1/generated.proto``) to ours."""
    if upstream_import.startswith("k8s.io/apimachinery/"):
        return APIMACHINERY[upstream_import.removeprefix("k8s.io/apimachinery/")]
    if upstream_import.startswith("k8s.io/apiextensions-apiserver/"):
        return APIEXTENSIONS[upstream_import.removeprefix("k8s.io/apiextensions-apiserver/")]
    if upstream_import.startswith("k8s.io/api/"):
        group_version = upstream_import.removeprefix("k8s.io/api/").removesuffix(
            "/generated.proto")
        group = group_version.split("/")[0]
        return f"k8s/{group_version}/{group}.proto"
    raise KeyError(upstream_import)


@dataclass
class Message:
    name: str
    fields: list[str] = field(default_factory=list)


FIELD = re.compile(
    r"^(?:(optional|repeated)\s+([\w.]+)|(map<\s*[\w.]+\s*,\s*[\w.]+\s*>))\s+(\w+)\s*=\s*(\d+)\s*;$"
)


def parse(text: str) -> tuple[str, list[str], list[Message]]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M)
    assert package, "no package"
    imports = re.findall(r'^import\s+"([^"]+)"\s*;', text, re.M)
    messages: list[Message] = []
    current: Message | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := re.match(r"^message\s+(\w+)\s*\{$", line):
            current = Message(m.group(1))
            continue
        if line == "}":
            if current is not None:
                messages.append(current)
            current = None
            continue
        if current is None:
            continue
        m = FIELD.match(line)
        if not m:
            raise ValueError(f"unexpected line in message {current.name}: {line!r}")
        label, typ, map_type, name, number = m.groups()
        if map_type:
            map_decl = re.sub(r"\s+", " ", map_type)
            current.fields.append(f"{map_decl} {name} = {number};")
        else:
            current.fields.append(f"{label} {typ} {name} = {number};")
    return package.group(1), imports, messages


def render(package: str, imports: list[str], messages: list[Message]) -> str:
    lines = [
        "// Kubernetes API types: message and field names, numbers and types as",
        "// Kubernetes publishes them (release 1.32). Written by tools/k8s_protogen.py.",
        'syntax = "proto2";',
        "",
        f"package {package};",
        "",
    ]
    lines += [f'import "{_our_path(i)}";' for i in imports]
    for message in messages:
        lines += ["", f"message {message.name} {{"]
        lines += [f"  {f}" for f in message.fields]
        lines.append("}")
    return "\n".join(lines) + "\n"


GO_STRUCT = re.compile(r"^type (\w+) struct \{$(.*?)^\}", re.M | re.S)
GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`", re.M)
GO_TAG = re.compile(r'(\w+):"([^"]*)"')
JSON_FIELDS = ROOT / "pilothouse" / "api" / "k8s_json_fields.py"


Facts = dict[str, dict[str, tuple[str, int]]]
PatchFacts = dict[str, dict[str, tuple[str, str]]]


def json_facts(go_dir: Path, package: str) -> tuple[Facts, PatchFacts, set[str]]:
    """Per message: proto field name -> (JSON name, flags) from the Go json tags.

    flags: 1 = omitempty, 2 = Go pointer (zero value is meaningful), 4 = inline
    (the field's own JSON fields appear in the parent object). Also the messages
    whose Go struct embeds TypeMeta (their JSON may carry apiVersion and kind).
    """
    facts: Facts = {}
    patch: PatchFacts = {}
    typed: set[str] = set()
    for go in sorted(go_dir.glob("*.go")):
        if go.name.endswith("_test.go") or go.name.startswith("zz_generated"):
            continue
        for struct in GO_STRUCT.finditer(go.read_text()):
            fields: dict[str, tuple[str, int]] = {}
            patches: dict[str, tuple[str, str]] = {}
            for name, go_type, raw_tag in GO_FIELD.findall(struct.group(2)):
                tag = dict(GO_TAG.findall(raw_tag))
                if not name and go_type.endswith("TypeMeta") and tag.get("json") == ",inline":
                    typed.add(f"{package}.{struct.group(1)}")
                if "json" not in tag or "protobuf" not in tag:
                    continue
                named = re.search(r"name=(\w+)", tag["protobuf"])
                # An embedded struct without name= takes its type's name.
                proto_name = named.group(1) if named else go_type[0].lower() + go_type[1:]
                json_name, _, options = tag["json"].partition(",")
                flags = 0
                if "omitempty" in options.split(","):
                    flags |= 1
                if go_type.startswith("*") or (not name and go_type.startswith("*")):
                    flags |= 2
                if "inline" in options.split(","):
                    flags |= 4
                fields[proto_name] = (json_name, flags)
                if "patchStrategy" in tag:
                    patches[json_name] = (tag["patchStrategy"], tag.get("patchMergeKey", ""))
            if fields:
                facts[f"{package}.{struct.group(1)}"] = fields
            if patches:
                patch[f"{package}.{struct.group(1)}"] = patches
    return facts, patch, typed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", type=Path, required=True)
    parser.add_argument("--apimachinery", type=Path, required=True)
    parser.add_argument("--apiextensions", type=Path, required=True)
    opts = parser.parse_args()
    jobs: list[tuple[Path, str]] = []
    jobs += [(opts.apimachinery / src, dst) for src, dst in APIMACHINERY.items()]
    jobs += [(opts.apiextensions / src, dst) for src, dst in APIEXTENSIONS.items()]
    jobs += [(opts.api / gv / "generated.proto", _our_path(f"k8s.io/api/{gv}/generated.proto"))
             for gv in API_GROUPS]
    parsed = {dst: parse(src.read_text()) for src, dst in jobs}
    facts: Facts = {}
    patch: PatchFacts = {}
    typed: set[str] = set()
    for src, dst in jobs:
        more_facts, more_patch, more_typed = json_facts(src.parent, parsed[dst][0])
        facts.update(more_facts)
        patch.update(more_patch)
        typed |= more_typed
    lines = [
        '"""JSON facts of the Kubernetes API types, from their Go json tags.',
        "",
        "Written by tools/k8s_protogen.py. Per protobuf message: proto field name ->",
        "(JSON name, flags); flags: 1 omitempty, 2 pointer (zero is meaningful),",
        "4 inline (its fields appear in the parent object). PATCH: per message, JSON",
        "name -> (patchStrategy, patchMergeKey) for strategic merge patch. TYPE_META:",
        'messages whose JSON may carry apiVersion and kind (Go embeds TypeMeta)."""',
        "",
        "FIELDS: dict[str, dict[str, tuple[str, int]]] = {",
    ]
    for message in sorted(facts):
        lines.append(f"    {message!r}: {{")
        lines += [f"        {k!r}: {v!r}," for k, v in facts[message].items()]
        lines.append("    },")
    lines.append("}")
    lines += ["", "PATCH: dict[str, dict[str, tuple[str, str]]] = {"]
    for message in sorted(patch):
        lines.append(f"    {message!r}: {{")
        lines += [f"        {k!r}: {v!r}," for k, v in patch[message].items()]
        lines.append("    },")
    lines.append("}")
    lines += ["", "TYPE_META: frozenset[str] = frozenset({"]
    lines += [f"    {name!r}," for name in sorted(typed)]
    lines.append("})")
    JSON_FIELDS.write_text("\n".join(lines) + "\n")
    package_of = {dst: package for dst, (package, _, _) in parsed.items()}
    for dst, (package, imports, messages) in parsed.items():
        types = {f.split()[1] for m in messages for f in m.fields if not f.startswith("map<")}
        types |= {f.split(",")[1].split(">")[0].strip() for m in messages for f in m.fields
                  if f.startswith("map<")}
        used = [i for i in imports
                if any(t.lstrip(".").startswith(package_of[_our_path(i)] + ".") for t in types)]
        target = ROOT / "protos" / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(package, used, messages))
        print(f"{dst}: {len(messages)} messages")


if __name__ == "__main__":
    main()
