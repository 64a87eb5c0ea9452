"""Cache keys: what changes a key, what never does, and how a miss is explained."""

from __future__ import annotations

import re
from pathlib import Path

from builder.buildargs import Scope
from builder.cachekey import Mount, StepInputs, copy_inputs, explain, run_inputs
from builder.context import SourceTree
from builder.imageconfig import StageConfig, expander
from builder.runmounts import Secret
from builder.steps import BuildEnv, prepare_run
from layerstore.oci import ContainerConfig
from layerstore.store import Store
from parser import Run, parse_buildfile


def run(**kw: object) -> StepInputs:
    args: dict[str, object] = {"argv": ["/bin/sh", "-c", "make"], "env": ["PATH=/bin", "A=1"], "user": "", "workdir": "/"}
    args.update(kw)
    parent = str(args.pop("parent", "sha256:" + "a" * 64))
    return run_inputs(parent, **args)  # type: ignore[arg-type]


def test_keys_are_64_hex_and_deterministic() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", run().key())
    assert run().key() == run().key()


def test_every_input_changes_the_key() -> None:
    base = run().key()
    variants = [
        run(parent="sha256:" + "b" * 64),
        run(argv=["/bin/sh", "-c", "make all"]),
        run(env=["PATH=/bin", "A=2"]),
        run(user="app"),
        run(workdir="/src"),
        run(network="none"),
        run(mounts=[Mount("cache", "/root/.cache", "pip")]),
        run(epoch=0),
        run(hostname="myhost"),
    ]
    keys = {v.key() for v in variants}
    assert base not in keys and len(keys) == len(variants)


def test_secret_values_never_enter_a_key(tmp_path: Path) -> None:
    """Through the step that reads the secret (as a file and as a variable): the key and the
    history hold its id and target, never its value, so a new value is still a cache hit."""
    buildfile = parse_buildfile(
        "FROM scratch\nRUN --mount=type=secret,id=token cat /run/secrets/token\n"
        "RUN --mount=type=secret,id=token,env=TOKEN,target=/t true\n"
    )
    sc = StageConfig(ContainerConfig(), Scope())
    keys = []
    for value in ("s3cr3t", "s3cr3t-other"):
        (tmp_path / "token").write_text(value)
        secrets = {"token": Secret("token", src=tmp_path / "token")}
        env = BuildEnv(Store(tmp_path / "store"), SourceTree(tmp_path), {}, {}, secrets, {}, "default", None, tmp_path)
        for step in buildfile.stages[0].instructions:
            assert isinstance(step, Run)
            prepared = prepare_run(env, step, sc, expander(sc, step, "\\"), "parent", lambda: (), lambda name: ("", lambda: ()))
            a = prepared.inputs.document()
            assert b"token" in a and b"s3cr3t" not in a  # only the id and target
            assert "s3cr3t" not in prepared.created_by
            keys.append(prepared.inputs.key())
    assert keys[:2] == keys[2:]


def test_copy_keys_depend_on_content_digests_and_names() -> None:
    def copy(sources: list[tuple[str, str]], **kw: object) -> str:
        return copy_inputs("p", op="COPY", sources=sources, dest="/app/", workdir="/", **kw).key()  # type: ignore[arg-type]

    k = copy([("a.txt", "sha256:1")])
    assert copy([("a.txt", "sha256:1")]) == k
    assert copy([("a.txt", "sha256:2")]) != k
    assert copy([("b.txt", "sha256:1")]) != k
    assert copy([("a.txt", "sha256:1")], chmod="755") != k
    assert copy([("a.txt", "sha256:1")], source_of="stage-key") != k
    assert copy_inputs("p", op="ADD", sources=[("a.txt", "sha256:1")], dest="/app/", workdir="/").key() != k


def test_explain_names_what_changed() -> None:
    assert explain(None, run()) == ["not built before"]
    assert explain(run(), run(env=["PATH=/bin", "A=2", "B=x"])) == ["variable A changed", "variable B changed"]
    assert explain(run(), run(parent="x", user="app")) == ["previous step changed", "user changed"]
    old = copy_inputs("p", op="COPY", sources=[("a", "1"), ("b", "1")], dest="/", workdir="/")
    new = copy_inputs("p", op="COPY", sources=[("a", "2"), ("c", "1")], dest="/", workdir="/")
    assert explain(old, new) == ["source a changed", "source c added", "source b removed"]
    assert explain(old, run()) == ["instruction changed (COPY -> RUN)"]


def test_inputs_round_trip_through_json() -> None:
    r = run(mounts=[Mount("bind", "/src", "sha256:9", (("rw", "true"),))])
    assert StepInputs.from_json(r.to_json()).key() == r.key()
