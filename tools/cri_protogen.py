"""Write ``protos/cri/runtime/v1/api.proto`` from the CRI's public protobuf schema.

The Container Runtime Interface is defined by k8s.io/cri-api's
``pkg/apis/runtime/v1/api.proto``. Wire compatibility with the kubelet,
containerd and crictl needs exactly its facts — package, service and method
names, message and enum names, field names, numbers and types — so this tool
reads that file and re-emits the facts only: no comments, no gogoproto options,
our own formatting.

    python tools/cri_protogen.py --source api.proto
    git -C CRI_API_REPO show v0.32.9:pkg/apis/runtime/v1/api.proto | \
        python tools/cri_protogen.py --source -

The output is committed; re-run only to move to a newer CRI release.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "protos" / "cri" / "runtime" / "v1" / "api.proto"

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*|-?\d+|[{}\[\]()<>;=,]')


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(strip_comments(text))


@dataclass
class Block:
    """A message, enum, service or oneof: a keyword, a name and its statements."""

    kind: str
    name: str
    lines: list[str | Block] = field(default_factory=list)


class Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos]

    def take(self, expected: str | None = None) -> str:
        tok = self.tokens[self.pos]
        if expected is not None and tok != expected:
            raise SystemExit(f"expected {expected!r}, found {tok!r} at token {self.pos}")
        self.pos += 1
        return tok

    def statement(self) -> list[str]:
        """Tokens up to and including the next ``;`` (not crossing braces)."""
        out: list[str] = []
        while True:
            tok = self.take()
            out.append(tok)
            if tok == ";":
                return out

    def body(self, kind: str, name: str) -> Block:
        block = Block(kind, name)
        self.take("{")
        while self.peek() != "}":
            tok = self.peek()
            if tok in ("message", "enum", "service", "oneof"):
                self.take()
                child_name = self.take()
                block.lines.append(self.body(tok, child_name))
            elif tok == "option":
                self.statement()  # options are Go code-generation hints
            elif tok == "rpc":
                block.lines.append(self.rpc())
            elif tok == ";":
                self.take()
            else:
                block.lines.append(render_field(self.statement()))
        self.take("}")
        return block

    def rpc(self) -> str:
        toks: list[str] = []
        while self.peek() not in ("{", ";"):
            toks.append(self.take())
        if self.take() == "{":
            while self.peek() != "}":
                self.take()  # rpc options (none in the CRI)
            self.take("}")
        text = " ".join(toks)
        text = text.replace(" (", "(").replace("( ", "(").replace(" )", ")")
        return text.replace("returns(", "returns (") + ";"

    def file(self) -> tuple[str, list[Block]]:
        package = ""
        blocks: list[Block] = []
        while self.pos < len(self.tokens):
            tok = self.peek()
            if tok in ("message", "enum", "service"):
                self.take()
                name = self.take()
                blocks.append(self.body(tok, name))
            elif tok == "package":
                package = self.statement()[1]
            else:
                self.statement()  # syntax, import, option
        return package, blocks


def render_field(toks: list[str]) -> str:
    """``repeated string names = 3 [deprecated = true];`` with gogo options dropped."""
    toks = toks[:-1]
    options = ""
    if "[" in toks:
        i = toks.index("[")
        inner = [t for t in toks[i + 1 : -1]]
        opts = " ".join(inner).split(" , ")
        kept = [o.replace(" = ", "=") for o in opts if "gogoproto" not in o]
        options = f" [{', '.join(kept)}]" if kept else ""
        toks = toks[:i]
    text = " ".join(toks)
    text = re.sub(r"map < (\w+) , (\w+) >", r"map<\1, \2>", text)
    return text + options + ";"


def emit(block: Block, indent: str = "") -> list[str]:
    out = [f"{indent}{block.kind} {block.name} {{"]
    for line in block.lines:
        if isinstance(line, Block):
            out.extend(emit(line, indent + "  "))
        else:
            out.append(f"{indent}  {line}")
    out.append(f"{indent}}}")
    return out


def render(source: str) -> str:
    package, blocks = Parser(tokenize(source)).file()
    if package != "runtime.v1":
        raise SystemExit(f"unexpected package {package!r}")
    head = [
        "// Generated by tools/cri_protogen.py from the CRI's public schema",
        "// (k8s.io/cri-api pkg/apis/runtime/v1/api.proto): names, numbers and types only.",
        'syntax = "proto3";',
        "",
        f"package {package};",
        "",
    ]
    body: list[str] = []
    for block in blocks:
        body.extend(emit(block))
        body.append("")
    return "\n".join(head + body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="upstream api.proto, or - for stdin")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()
    text = sys.stdin.read() if opts.source == "-" else Path(opts.source).read_text()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(render(text))
    print(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
