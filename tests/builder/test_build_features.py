"""End-to-end: RUN mounts and secrets, heredocs, variables, .dockerignore, ADD, --link, --squash,
SOURCE_DATE_EPOCH reproducibility and the cache rules BuildKit users rely on."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from layerstore.store import Store
from tests.builder.buildtools import build, created_by, image, step_lines, write_context
from tests.conftest import Pybuild, make_pb

pytestmark = pytest.mark.root


def run(pb: Pybuild, ref: str, script: str) -> str:
    return pb("run", "--rm", "--entrypoint", "sh", ref, "-c", script).stdout


def layer_bytes(store_root: Path, ref: str) -> bytes:
    """Every layer of an image, uncompressed, concatenated (to look for leaked secrets)."""
    out = b""
    with Store.open(store_root) as store:
        for layer in store.resolve(ref).layers:
            with store.layers.open_tar(layer) as r:
                out += r.read()
    return out


def test_cache_mount_survives_builds_and_stays_out_of_layers(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        "FROM busybox\nRUN --mount=type=cache,target=/cache,id=c1 echo x >> /cache/log && wc -l < /cache/log > /count\n",
    )
    build(pb, ctx, "-t", "c:1")
    build(pb, ctx, "-t", "c:2", "--no-cache")
    assert run(pb, "c:2", "cat /count; test -e /cache || echo no-mount-point") == "2\nno-mount-point\n"
    assert b"cache/log" not in layer_bytes(busybox_store, "c:2")


def test_secrets_never_reach_a_layer_the_key_or_the_history(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value")
    ctx = write_context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "RUN --mount=type=secret,id=tok sha256sum < /run/secrets/tok | cut -c1-12 > /h && stat -c %a /run/secrets/tok > /mode\n"
        "RUN --mount=type=secret,id=tok,env=TOKEN,target=/t printf %s \"$TOKEN\" | sha256sum | cut -c1-12 > /env-h\n",
    )
    log = build(pb, ctx, "-t", "s:1", "--secret", f"id=tok,src={secret}").stderr
    h = hashlib.sha256(b"s3cr3t-value").hexdigest()[:12]
    assert run(pb, "s:1", "cat /h /env-h /mode; test -e /run/secrets/tok || echo gone") == f"{h}\n{h}\n400\ngone\n"
    assert "s3cr3t" not in log
    for path in busybox_store.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"s3cr3t" not in path.read_bytes(), path
    assert b"s3cr3t" not in layer_bytes(busybox_store, "s:1")
    # the value is not in the key: a new value is still a cache hit
    secret.write_text("s3cr3t-other")
    ctx2 = write_context(tmp_path / "ctx2", "FROM busybox\nRUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /n\n")
    build(pb, ctx2, "-t", "s:2", "--secret", f"id=tok,src={secret}")
    secret.write_text("changed-again-longer")
    log = build(pb, ctx2, "-t", "s:3", "--secret", f"id=tok,src={secret}").stderr
    assert any("RUN --mount=type=secret" in s for s in step_lines(log, "CACHED"))
    missing = write_context(tmp_path / "ctx3", "FROM busybox\nRUN --mount=type=secret,id=nope,required true\n")
    proc = build(pb, missing, check=False)
    assert proc.returncode == 1 and "secret nope not found" in proc.stderr


def test_bind_and_tmpfs_mounts(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """FROM busybox AS tools
RUN echo tool > /tool
FROM busybox
RUN --mount=type=bind,source=src,target=/mnt ls /mnt > /listed && cat /mnt/a > /a
RUN --mount=type=bind,target=/ctx,rw touch /ctx/new && echo wrote
RUN --mount=type=bind,from=tools,source=/tool,target=/t cat /t > /from-stage
RUN --mount=type=tmpfs,target=/scratch,size=1m echo x > /scratch/f && mount | grep -q ' /scratch ' && echo tmp > /tmpfs-ok
"""
    ctx = write_context(tmp_path / "ctx", text, {"src/a": "A\n", "src/ignored.log": "no", ".dockerignore": "**/*.log\n"})
    build(pb, ctx, "-t", "m:1")
    assert run(pb, "m:1", "cat /listed /a /from-stage /tmpfs-ok; ls /mnt /ctx /t /scratch 2>/dev/null | wc -l") == "a\nA\ntool\ntmp\n0\n"
    assert not (ctx / "new").exists()  # rw bind writes are thrown away
    # the bind source's content is part of the key
    (ctx / "src/a").write_text("B\n")
    log = build(pb, ctx, "-t", "m:2").stderr
    assert any("source=src" in s for s in step_lines(log, "DONE"))


def test_run_network_none_has_only_loopback(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nRUN --network=none ls /sys/class/net > /ifaces\n")
    build(pb, ctx, "-t", "n:1")
    assert run(pb, "n:1", "cat /ifaces") == "lo\n"


def test_heredoc_run_forms(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """FROM busybox
RUN <<EOF
echo simple > /simple
EOF
RUN <<EOF
#!/bin/sh
echo "shebang $0" > /shebang
EOF
RUN <<-A cat > /two; cat <<B >> /two
	first
	A
second
B
COPY <<CONF /etc/app.conf
value=$V
CONF
RUN <<'EOF'
echo "lone, quoted: $V" > /quoted
EOF
RUN <<'EOF' cat >> /quoted; cat 3<<EOF <&3 >> /quoted
with a command: $V
EOF
fd 3: $V
EOF
COPY <<-"X" <<Y /d/
	x $V
	X
y $V
Y
"""
    ctx = write_context(tmp_path / "ctx", text.replace("FROM busybox\n", "FROM busybox\nARG V=42\n", 1))
    build(pb, ctx, "-t", "h:1")
    assert run(pb, "h:1", "cat /simple /shebang /two /etc/app.conf") == "simple\nshebang /dev/pipes/EOF\nfirst\nsecond\nvalue=42\n"
    # a lone heredoc is a script for SHELL (its quoting does not matter); with a command the
    # shell reads the heredocs and honours the quoting; COPY expands unless the name is quoted
    assert run(pb, "h:1", "cat /quoted /d/X /d/Y") == "lone, quoted: 42\nwith a command: $V\nfd 3: 42\nx $V\ny 42\n"
    history = created_by(busybox_store, "h:1")
    assert "RUN |1 V=42 /bin/sh -c /dev/pipes/EOF # buildkit" in history  # BuildKit runs the script through SHELL
    assert "RUN |1 V=42 /bin/sh -c echo simple > /simple\n # buildkit" in history


def test_variables_reach_run_as_buildkit_has_them(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """ARG GLOBAL=g
FROM busybox
ARG GLOBAL
ARG UNSET
ARG LATE=arg
ENV LATE=env FROM_ENV=$GLOBAL
ENV abc=bye def=$abc
RUN env | grep -E '^(GLOBAL|UNSET|LATE|FROM_ENV|abc|def|http_proxy)=' | sort > /env
"""
    ctx = write_context(tmp_path / "ctx", text)
    build(pb, ctx, "-t", "v:1", "--build-arg", "http_proxy=http://proxy:3128", "--build-arg", "NOTDECLARED=x")
    assert run(pb, "v:1", "cat /env") == "FROM_ENV=g\nGLOBAL=g\nLATE=env\nabc=bye\ndef=\nhttp_proxy=http://proxy:3128\n"
    history = created_by(busybox_store, "v:1")
    assert any(h.startswith("RUN |3 GLOBAL=g UNSET= LATE=env /bin/sh -c env") for h in history)
    assert not any("http://proxy" in h for h in history)
    assert image(busybox_store, "v:1").config.config.env_dict()["LATE"] == "env"


def test_metadata_changes_rerun_nothing(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nLABEL v=1\nRUN echo a > /a\nCMD [\"one\"]\n")
    build(pb, ctx, "-t", "l:1")
    (ctx / "Buildfile").write_text("FROM busybox\nLABEL v=2\nRUN echo a > /a\nCMD [\"two\"]\n")
    log = build(pb, ctx, "-t", "l:2").stderr
    assert "[2/2] RUN echo a > /a" in step_lines(log, "CACHED")
    one, two = image(busybox_store, "l:1"), image(busybox_store, "l:2")
    assert one.layers == two.layers and two.config.config.labels == {"v": "2"} and two.config.config.cmd == ("two",)


def test_dockerignore_and_buildfile_specific_ignore(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    files = {"keep.txt": "k", "secret.key": "s", "logs/a.log": "l", "logs/keep.log": "kl", ".dockerignore": "*.key\nlogs\n!logs/keep.log\n"}
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nCOPY . /ctx/\n", files)
    build(pb, ctx, "-t", "i:1")
    assert run(pb, "i:1", "cd /ctx && find . -type f | sort") == "./.dockerignore\n./Buildfile\n./keep.txt\n./logs/keep.log\n"
    (ctx / "Buildfile.dockerignore").write_text("keep.txt\n")
    build(pb, ctx, "-t", "i:2")
    assert "keep.txt" not in run(pb, "i:2", "ls /ctx")
    proc = build(pb, write_context(tmp_path / "bad", "FROM busybox\n", {".dockerignore": "ok\n!\n"}), check=False)
    assert '.dockerignore:2: illegal exclusion pattern: "!"' in proc.stderr


def test_add_archives_and_copy_chown_and_link(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("pkg/file")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"h\n"))
    ctx = write_context(
        tmp_path / "ctx",
        "FROM busybox\nADD data.bin /opt/\nCOPY --chown=nobody:nogroup --chmod=0640 a /owned\nCOPY --link a /etc/linked/\n",
        {"a": "A\n"},
    )
    (ctx / "data.bin").write_bytes(gzip.compress(buf.getvalue()))
    build(pb, ctx, "-t", "x:1")
    assert run(pb, "x:1", "cat /opt/pkg/file; stat -c '%U %G %a' /owned; cat /etc/linked/a; test -e /etc/passwd && echo etc-kept") == (
        "h\nnobody nogroup 640\nA\netc-kept\n"
    )


def test_source_date_epoch_gives_the_same_digest_in_two_fresh_stores(busybox_store_template: Path, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        "FROM busybox\nWORKDIR /app\nCOPY a /app/a\nRUN echo built > /app/built && mkdir -p /app/d\nENV X=1\n",
        {"a": "A"},
    )
    digests = []
    for n in (1, 2):
        store = tmp_path / f"store{n}"
        shutil.copytree(busybox_store_template, store, symlinks=True)
        pb = make_pb(store)
        build(pb, ctx, "-t", "r:1", "--build-arg", "SOURCE_DATE_EPOCH=1700000000")
        digests.append(image(store, "r:1").digest)
        (ctx / "a").touch()  # a new mtime must not matter either
    assert digests[0] == digests[1]
    img = image(tmp_path / "store1", "r:1")
    assert img.config.created == "2023-11-14T22:13:20Z"
    assert {h.created for h in img.history[1:]} == {"2023-11-14T22:13:20Z"}


def test_squash_merges_only_this_builds_layers(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = "FROM busybox\nRUN echo a > /a && echo gone > /gone\nRUN rm /gone /bin/true && echo b > /b\nCOPY f /f\n"
    ctx = write_context(tmp_path / "ctx", text, {"f": "F\n"})
    build(pb, ctx, "-t", "sq:1", "--squash")
    base, img = image(busybox_store, "busybox"), image(busybox_store, "sq:1")
    assert len(img.layers) == len(base.layers) + 1 and img.layers[: len(base.layers)] == base.layers
    assert len(img.history) == len(base.history) + 3
    assert run(pb, "sq:1", "cat /a /b /f; test -e /gone || echo gone-gone; test -e /bin/true || echo true-gone") == (
        "a\nb\nF\ngone-gone\ntrue-gone\n"
    )


def test_explain_cache_in_json_progress(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nENV MODE=a\nRUN echo $MODE > /mode\n")
    build(pb, ctx, "-t", "e:1")
    (ctx / "Buildfile").write_text("FROM busybox\nENV MODE=b\nRUN echo $MODE > /mode\n")
    events = [json.loads(line) for line in pb("build", "--progress", "json", "--explain-cache", ctx).stderr.splitlines()]
    start = next(e for e in events if e["event"] == "start" and "RUN" in e.get("name", ""))
    assert start["cache_miss"] == ["variable MODE changed"]


def test_no_cache_filter_reruns_only_that_stage(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox AS a\nRUN echo a > /a\nFROM busybox AS b\nRUN echo b > /b\nCOPY --from=a /a /a\n")
    build(pb, ctx, "-t", "f:1")
    log = build(pb, ctx, "-t", "f:2", "--no-cache-filter", "B").stderr
    assert "[a 2/2] RUN echo a > /a" in step_lines(log, "CACHED")
    assert "[b 2/3] RUN echo b > /b" in step_lines(log, "DONE")


def test_missing_copy_source_names_the_line(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\n\nCOPY nothere /x\n", {".dockerignore": "secret\n", "secret": "s"})
    proc = build(pb, ctx, check=False)
    assert 'error: Buildfile:3: "nothere": not found in the build context or excluded by' in proc.stderr
    (ctx / "Buildfile").write_text("FROM busybox\nCOPY secret /x\n")
    assert '"secret": not found in the build context' in build(pb, ctx, check=False).stderr
