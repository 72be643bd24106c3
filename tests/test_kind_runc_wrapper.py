"""The runc wrapper (data/images/runc-wrapper): built with Go, run against a fake runc."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rollback_drill.toolchain import kind_image

SOURCE = Path(kind_image.__file__).parent.parent / "data" / "images" / "runc-wrapper"
CAPS = ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_BPF"]
CAP_NUMBERS = {"CAP_CHOWN": 0, "CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24, "CAP_BPF": 39}


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        pytest.skip("Go is not installed; the runc wrapper is built with Go")
    return go


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory):
    work = tmp_path_factory.mktemp("runc-wrapper")
    fake = work / "fake-runc"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_RUNC_ARGS"\n')
    fake.chmod(0o755)
    for name in ("main.go", "go.mod"):
        shutil.copy(SOURCE / name, work / name)
    subprocess.run(
        [_go(), "build", "-ldflags", f"-X main.realRunc={fake}", "-o", str(work / "wrapper"), "."],
        cwd=work,
        env=dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false"),
        check=True,
        capture_output=True,
    )
    return work / "wrapper"


def _bounding() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise AssertionError("no CapBnd")


def _expected() -> list[str]:
    bounding = _bounding()
    return [c for c in CAPS if bounding & (1 << CAP_NUMBERS[c])]


def _process() -> dict[str, object]:
    sets = ("bounding", "effective", "permitted", "inheritable", "ambient")
    return {"args": ["sh"], "capabilities": {s: list(CAPS) for s in sets}}


def _run(wrapper: Path, args: list[str], tmp_path: Path) -> list[str]:
    record = tmp_path / "args"
    subprocess.run([str(wrapper), *args], env=dict(os.environ, FAKE_RUNC_ARGS=str(record)), check=True)
    return record.read_text().splitlines()


def test_create_drops_what_the_host_cannot_grant_and_keeps_the_rest(wrapper, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    limit = 18446744073709551615
    config = {"ociVersion": "1.0.2", "process": _process(), "linux": {"resources": {"memory": {"limit": limit}}}}
    (bundle / "config.json").write_text(json.dumps(config))
    args = ["--root", "/run/x", "--log", "/l.json", "--log-format", "json", "create", "--bundle", str(bundle), "id1"]
    assert _run(wrapper, args, tmp_path) == args
    edited = json.loads((bundle / "config.json").read_text())
    for name, values in edited["process"]["capabilities"].items():
        assert values == _expected(), name
    assert edited["linux"]["resources"]["memory"]["limit"] == limit


def test_exec_edits_the_process_file(wrapper, tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps(_process()))
    args = ["--root", "/run/x", "exec", "--process", str(process), "--detach", "id1"]
    assert _run(wrapper, args, tmp_path) == args
    assert json.loads(process.read_text())["capabilities"]["effective"] == _expected()


def test_other_commands_pass_through_untouched(wrapper, tmp_path):
    args = ["--root", "/run/x", "state", "id1"]
    assert _run(wrapper, args, tmp_path) == args
