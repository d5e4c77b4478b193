"""The agent protocol: committed stubs, the .proto and docs/agent-protocol.md stay one thing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from medic_core.server.grpc.proto import agent_pb2, agent_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "medic_core" / "server" / "grpc" / "proto"
DOC = ROOT / "docs" / "agent-protocol.md"

SCALARS = {
    getattr(FieldDescriptor, f"TYPE_{name.upper()}"): name
    for name in (
        "double", "float", "int64", "uint64", "int32", "fixed64", "fixed32", "bool", "string",
        "bytes", "uint32", "sfixed32", "sfixed64", "sint32", "sint64",
    )
}  # fmt: skip


def _files(directory: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in {".py", ".pyi"}
    }


def test_committed_stubs_are_exactly_what_the_generator_writes(tmp_path: Path) -> None:
    out = tmp_path / "proto"
    result = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "gen_python.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    committed, fresh = _files(STUBS), _files(out)
    assert sorted(committed) == sorted(fresh), "the stub package holds other files than generated"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, (
        f"{', '.join(stale)} differ from proto/medic/agent/v1/agent.proto: run "
        "`.venv/bin/python proto/gen_python.py` and commit the result (if only the header's "
        "versions differ, install the pinned grpcio-tools and mypy-protobuf instead)"
    )


def test_service_is_one_bidirectional_connect_stream() -> None:
    service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
    assert service.full_name == "medic.agent.v1.AgentService"
    assert [method.name for method in service.methods] == ["Connect"]
    connect = service.methods_by_name["Connect"]
    assert connect.client_streaming and connect.server_streaming
    assert connect.input_type is agent_pb2.AgentMessage.DESCRIPTOR
    assert connect.output_type is agent_pb2.ServerMessage.DESCRIPTOR
    assert callable(agent_pb2_grpc.add_AgentServiceServicer_to_server)
    assert agent_pb2_grpc.AgentServiceStub.__init__ is not object.__init__


def test_envelopes_carry_exactly_the_documented_messages() -> None:
    agent_side = agent_pb2.AgentMessage.DESCRIPTOR.oneofs_by_name["body"]
    server_side = agent_pb2.ServerMessage.DESCRIPTOR.oneofs_by_name["body"]
    assert [f.message_type.name for f in agent_side.fields] == [
        "Hello",
        "Heartbeat",
        "ExecutionUpdate",
        "OutputChunk",
    ]
    assert [f.message_type.name for f in server_side.fields] == ["Welcome", "Execute", "Cancel"]


def _type_of(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        entry = field.message_type.fields_by_name
        return f"map<{_type_of(entry['key'])}, {_type_of(entry['value'])}>"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.name
    elif field.type == FieldDescriptor.TYPE_ENUM:
        name = field.enum_type.name
    else:
        name = SCALARS[field.type]
    if field.is_repeated:
        return f"repeated {name}"
    oneof = field.containing_oneof
    if oneof is not None and oneof.name == f"_{field.name}":  # proto3 `optional`
        return f"optional {name}"
    return name


def _doc_tables() -> dict[str, list[tuple[int, str, str]]]:
    """`### `Name`` sections of the doc -> their table rows as (number, name, type)."""
    tables: dict[str, list[tuple[int, str, str]]] = {}
    current: str | None = None
    for line in DOC.read_text().splitlines():
        heading = re.fullmatch(r"### `(\w+)`", line)
        if heading:
            current = heading.group(1)
            tables[current] = []
            continue
        if line.startswith("## "):
            current = None
        row = re.match(r"\| (\d+) \| `(\w+)` \| (?:`([^`]+)` \|)?", line)
        if current is not None and row:
            tables[current].append((int(row.group(1)), row.group(2), row.group(3) or ""))
    return tables


def _all_types() -> list[Descriptor | EnumDescriptor]:
    return [
        *agent_pb2.DESCRIPTOR.message_types_by_name.values(),
        *agent_pb2.DESCRIPTOR.enum_types_by_name.values(),
    ]


def test_every_message_and_enum_is_documented_and_nothing_else() -> None:
    assert sorted(_doc_tables()) == sorted(t.name for t in _all_types())


@pytest.mark.parametrize("kind", _all_types(), ids=lambda t: t.name)
def test_doc_table_lists_the_fields_with_their_numbers_and_types(
    kind: Descriptor | EnumDescriptor,
) -> None:
    documented = _doc_tables()[kind.name]
    if isinstance(kind, EnumDescriptor):
        actual = [(value.number, value.name, "") for value in kind.values]
    else:
        actual = [(field.number, field.name, _type_of(field)) for field in kind.fields]
    assert documented == actual


def test_messages_round_trip_through_the_wire_format() -> None:
    hello = agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            agent_id="0b6f4a52-8d1e-4c3b-9a57-2f1e0c9d8b7a",
            hostname="web-1",
            agent_version="0.1.0",
            os="linux",
            arch="x86_64",
            labels={"role": "web"},
            allowlist=agent_pb2.AllowlistSummary(
                sha256="ab" * 32,
                scripts=[
                    agent_pb2.ScriptRules(
                        name="restart-nginx",
                        sha256="cd" * 32,
                        args=[
                            agent_pb2.ArgumentRule(fixed="--graceful"),
                            agent_pb2.ArgumentRule(one_of=agent_pb2.ValueSet(values=["a", "b"])),
                        ],
                        rest=agent_pb2.RestArguments(
                            rule=agent_pb2.ArgumentRule(
                                pattern=agent_pb2.Pattern(regex="[a-z]+", max_len=32)
                            ),
                            max_count=4,
                        ),
                        env=["LOG_LEVEL"],
                        timeout_seconds=60,
                    )
                ],
            ),
        )
    )
    parsed = agent_pb2.AgentMessage.FromString(hello.SerializeToString())
    assert parsed == hello
    assert parsed.WhichOneof("body") == "hello"
    assert parsed.hello.allowlist.scripts[0].rest.rule.WhichOneof("rule") == "pattern"

    update = agent_pb2.ExecutionUpdate(
        execution_id="e1", state=agent_pb2.EXECUTION_STATE_SUCCEEDED, exit_code=0
    )
    again = agent_pb2.ExecutionUpdate.FromString(update.SerializeToString())
    assert again.HasField("exit_code") and again.exit_code == 0
    assert not again.HasField("signal")

    execute = agent_pb2.ServerMessage(
        execute=agent_pb2.Execute(
            execution_id="e1", script="restart-nginx", args=["--graceful"], env={"A": "1"}
        )
    )
    assert agent_pb2.ServerMessage.FromString(execute.SerializeToString()) == execute
