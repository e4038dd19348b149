#!/usr/bin/env python3
"""Regenerate kubectl_teleport/proto/teleport_auth_pb2.py and .pyi from proto/teleport_auth.proto.

Runs grpcio-tools' protoc (`python -m grpc_tools.protoc`, from the test extra) with the interpreter running this
script. Messages only: no `_pb2_grpc` module, because the plugin never imports grpc.

    .dev/venv/bin/python tools/gen_proto.py          # rewrite the generated files
    .dev/venv/bin/python tools/gen_proto.py --check  # exit 1 if they do not match the .proto

`--check` compares descriptors, not text, so a different grpcio-tools version does not count as a difference.
The generated module refuses a protobuf runtime older than the protoc that made it: after regenerating, keep the
`protobuf>=` lower bound in pyproject.toml at or above the version this script prints.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2  # grpcio-tools depends on protobuf

REPO = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO / "proto"
# protoc sees proto/teleport_auth.proto as kubectl_teleport/proto/teleport_auth.proto (a virtual path), so the
# generated module knows its real import name and registers a file name no other package is likely to use.
PACKAGE_DIR = "kubectl_teleport/proto"
PROTO = f"{PACKAGE_DIR}/teleport_auth.proto"
MODULE = REPO / PACKAGE_DIR / "teleport_auth_pb2.py"


def _well_known_include() -> Path:
    """grpcio-tools' copy of google/protobuf/*.proto (empty.proto, timestamp.proto)."""
    try:
        import grpc_tools
    except ImportError:
        sys.exit("grpcio-tools is not installed: run ./install.sh --dev --prefix .dev (the test extra has it)")
    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def protoc(*outputs: str) -> None:
    """Run protoc on our .proto with the given output flags (e.g. --python_out=DIR)."""
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PACKAGE_DIR}={PROTO_DIR}", f"-I{_well_known_include()}",
           *outputs, PROTO]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"protoc failed:\n{result.stderr.strip()}")


def gencode_version(module: Path = MODULE) -> str:
    """The protobuf version the generated module requires at least (its runtime version check)."""
    pattern = r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),"
    match = re.search(pattern, module.read_text())
    if match is None:
        sys.exit(f"{module} has no protobuf runtime version check: was it made by grpcio-tools >= 1.63?")
    return ".".join(match.groups())


def _drop_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Clear every field's json_name, nested messages included."""
    pending = list(file.message_type)
    while pending:
        message = pending.pop()
        for field in message.field:
            field.ClearField("json_name")
        pending.extend(message.nested_type)


def check() -> int:
    """0 if the committed module describes exactly what the .proto says, else 1 (with a hint)."""
    sys.path.insert(0, str(REPO))
    from kubectl_teleport.proto import teleport_auth_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        protoc(f"--descriptor_set_out={out}")
        fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto.FromString(teleport_auth_pb2.DESCRIPTOR.serialized_pb)
    _drop_json_names(fresh)  # the Python generator leaves out default json_names
    _drop_json_names(committed)
    if fresh != committed:
        print(f"{MODULE.relative_to(REPO)} is stale: run {Path(__file__).relative_to(REPO)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the generated module is current")
    args = parser.parse_args(argv)
    if args.check:
        return check()
    protoc(f"--python_out={REPO}", f"--pyi_out={REPO}")
    print(f"wrote {MODULE.relative_to(REPO)}(i); it needs protobuf>={gencode_version()} at run time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
