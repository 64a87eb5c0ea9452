"""The one-pass pull (download -> digest -> blob file, and -> decompress -> diff_id -> layer check,
with reused buffers; staging for a load extracts instead of checking): layers bigger than the
buffers come out byte for byte in every compression, from a registry and from readers that hand
out odd-sized pieces; a hostile layer is refused while it arrives, leaving no tag, no blob and
nothing outside the store; a cut download resumes."""

from __future__ import annotations

import fcntl
import io
import mmap
import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from layerstore.registry import RegistryClient
from layerstore.store import Store
from layerstore.transfer_import import SYNC_THREADS, Staging, _BlobFile, _Syncer
from layerstore.transfer_registry import pull_image
from layerstore.transfer_tee import BUFFER, DEPTH
from pybuild.errors import StoreError
from tests.conftest import need_tool

from .archives import Entry, compress, layer_tar, put_layered_image, sha
from .servers import Fault, FaultProxy, Registry
from .test_hostile_input import TRAVERSALS

pytestmark = pytest.mark.root

# More than the DEPTH buffers a download holds, so every buffer is reused several times; half
# random (stored raw by zstd), half text (long matches), so both kinds of zstd block occur.
BIG = os.urandom(3 * DEPTH * BUFFER // 4) + b"text that compresses well, line %d\n" * (DEPTH * BUFFER // 64)


def big_layer() -> tuple[bytes, dict[str, bytes]]:
    files = {"big.bin": BIG, "small.txt": b"small\n", "dir/other.bin": BIG[::-1][: 3 * BUFFER + 17]}
    entries = [Entry("dir", type=b"5")] + [Entry(name, data) for name, data in files.items()]
    return layer_tar(entries), files


def nothing_published(root: Path) -> bool:
    with Store.open(root) as store:
        return (not list(store.tags.all()) and not list(store.blobs.all()) and not any(store.tmp.iterdir())
                and not any(store.layers.layout.unpacked.iterdir()))


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_layers_bigger_than_the_buffers_pull_byte_exact(registry: Registry, unique_repo: str, tmp_path: Path,
                                                        compression: str) -> None:
    tar, files = big_layer()
    second = layer_tar([Entry("second.txt", b"on top\n")])
    with RegistryClient(registry.host) as c:
        digest = put_layered_image(c, unique_repo, "1", [tar, second], compression=compression)
    with Store.open(tmp_path / "s") as store:
        image = pull_image(store, f"{registry.host}/{unique_repo}:1")
        assert image.digest == digest
        assert [layer.diff_id for layer in image.layers] == [sha(tar), sha(second)]
        assert not any(store.layout.unpacked.iterdir())  # unpacked when first used, not by the pull
        first, top = store.lower_dirs(image)[::-1]
        for name, data in files.items():
            assert (first / name).read_bytes() == data, name
        assert top.joinpath("second.txt").read_bytes() == b"on top\n"
        assert store.tags.get(f"{registry.host}/{unique_repo}:1") == digest
        assert not any(store.tmp.iterdir())
        assert {p.stat().st_mode & 0o777 for p in store.layout.blobs.iterdir()} == {0o444}


class OddPieces(io.RawIOBase):
    """A reader whose reads stop short at random places, as a socket's do."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data, self._pos, self._rng = data, 0, random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._rng.choice([1, 511, 4096, 65537, BUFFER]), len(self._data) - self._pos)
        buf[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


class ReadOnly:
    """A reader with `read` only (no `readinto`)."""

    def __init__(self, source: OddPieces) -> None:
        self.read = source.read


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
@pytest.mark.parametrize("kind", ["readinto", "read", "chunks"])
def test_staging_with_odd_pieces_gives_the_layer_and_its_diff_id(tmp_path: Path, compression: str, kind: str) -> None:
    tar, files = big_layer()
    packed = compress(tar, compression)
    odd = OddPieces(packed, seed=len(packed))
    # a reader filling the pool's buffers; one returning new bytes; chunks, as an archive member is read
    source = {"readinto": odd, "read": ReadOnly(odd), "chunks": iter(lambda: odd.read(70_000), b"")}[kind]
    with Store.open(tmp_path / "s") as store, Staging(store) as staging:
        staged = staging.stage(source, what="layer", expected=sha(packed), expected_size=len(packed))  # type: ignore[arg-type]
        assert (staged.digest, staged.size, staged.compression) == (sha(packed), len(packed), compression)
        assert (staged.diff_id, staged.uncompressed_size) == (sha(tar), len(tar))
        assert staged.path.read_bytes() == packed
        assert staged.unpacked is not None
        for name, data in files.items():
            assert (staged.unpacked / name).read_bytes() == data, name


@pytest.mark.parametrize("declared", [-1, +1, +(1 << 30)])
def test_a_stream_that_is_not_its_size_is_refused_and_leaves_nothing(tmp_path: Path, declared: int) -> None:
    # longer than declared; shorter (the staged file was preallocated to the declared size, so
    # its zeros must not count); far shorter than a lying descriptor says
    tar, _ = big_layer()
    packed = compress(tar, "zstd")
    with Store.open(tmp_path / "s") as store:
        with Staging(store) as staging:
            with pytest.raises(StoreError, match="size mismatch"):
                staging.stage(OddPieces(packed, seed=1), what="layer", expected=sha(packed),
                              expected_size=len(packed) + declared)
            assert not any(staging.dir.iterdir())
        assert not any(store.tmp.iterdir())


@pytest.mark.parametrize("case", sorted(TRAVERSALS))
def test_a_hostile_layer_from_a_registry_is_refused_and_publishes_nothing(registry: Registry, unique_repo: str,
                                                                         tmp_path: Path, case: str) -> None:
    honest, _ = big_layer()
    evil = layer_tar(TRAVERSALS[case])
    with RegistryClient(registry.host) as c:
        put_layered_image(c, unique_repo, "1", [honest, evil])
    root = tmp_path / "s"
    with Store.open(root) as store, pytest.raises(StoreError, match=re.escape(f"{unique_repo}:1 (sha256:")):
        pull_image(store, f"{registry.host}/{unique_repo}:1")
    assert nothing_published(root)
    assert not (tmp_path / "outside-evil").exists()
    assert not Path("/tmp/pybuild-absolute-evil").exists()
    assert not Path("/tmp/pybuild-symlink-evil").exists()


def test_a_cut_download_resumes_with_a_range_request(registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    tar, files = big_layer()
    with RegistryClient(registry.host) as c:
        digest = put_layered_image(c, unique_repo, "1", [tar])
    with FaultProxy(registry.host) as proxy:
        proxy.add(Fault("GET", "/blobs/sha256", "truncate", times=1))
        with Store.open(tmp_path / "s") as store:
            image = pull_image(store, f"{proxy.host}/{unique_repo}:1")
            assert image.digest == digest
            assert store.layers.unpack(image.layers[0]).joinpath("big.bin").read_bytes() == files["big.bin"]
        assert any(h.get("Range", "").startswith("bytes=") for m, _, h in proxy.seen if m == "GET")


def test_freed_buffers_are_kept_on_glibc() -> None:
    import sys

    code = "from layerstore.transfer_libc import keep_freed_buffers; print(keep_freed_buffers())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"  # Debian's libc is glibc; elsewhere it is False and harmless



def test_pulled_layers_go_to_the_disk_without_the_page_cache(registry: Registry, unique_repo: str,
                                                             tmp_path: Path) -> None:
    """Whole pages are written with O_DIRECT: of a layer blob only its last few bytes (not a whole
    page, so written through the page cache) are resident after the pull."""
    need_tool("fincore")
    tar, _ = big_layer()
    with RegistryClient(registry.host) as c:
        put_layered_image(c, unique_repo, "1", [tar], compression="zstd")
    with Store.open(tmp_path / "s") as store:
        image = pull_image(store, f"{registry.host}/{unique_repo}:1")
        blob = store.blobs.path(image.layers[0].digest)
    size = blob.stat().st_size
    assert size > 2 * BUFFER
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(blob)],
                         capture_output=True, text=True, check=True).stdout
    assert int(out) <= 64 * 1024, f"{out.strip()} of {size} bytes resident"


def test_a_blob_file_writes_whole_pages_directly_and_the_rest_as_usual(tmp_path: Path) -> None:
    buf = mmap.mmap(-1, 2 * BUFFER)  # as the pool's buffers: page-aligned
    data = os.urandom(2 * BUFFER)
    buf[:] = data
    out = _BlobFile(tmp_path / "blob", 2 * BUFFER + 100)
    try:
        assert out.direct  # ext4 here; a file system without direct I/O would start with False
        out.write(memoryview(buf), aligned=True)
        assert out.direct and fcntl.fcntl(out.fd, fcntl.F_GETFL) & os.O_DIRECT
        out.write(memoryview(buf)[:4096 + 100], aligned=True)  # a page direct, then a tail: ordinary
        assert not out.direct and not fcntl.fcntl(out.fd, fcntl.F_GETFL) & os.O_DIRECT
        out.write(memoryview(buf)[:BUFFER], aligned=True)  # at an odd offset now: stays ordinary
    finally:
        out.finish()
    assert (tmp_path / "blob").read_bytes() == data + data[:4096 + 100] + data[:BUFFER]
    assert (tmp_path / "blob").stat().st_mode & 0o777 == 0o444


def test_many_staged_blobs_are_synced_by_a_few_threads(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        with Staging(store) as staging:
            staged = [staging.stage(io.BytesIO(b"blob %d" % i), what=f"blob {i}") for i in range(3 * SYNC_THREADS + 5)]
            assert len([t for t in threading.enumerate() if t.name == "stage-sync"]) <= SYNC_THREADS
            staging.synced()
            assert {s.path.stat().st_mode & 0o777 for s in staged} == {0o444}
        deadline = time.monotonic() + 30
        while any(t.name == "stage-sync" for t in threading.enumerate()):  # they were told to stop
            assert time.monotonic() < deadline, "sync threads still running"
            time.sleep(0.01)


def test_a_file_that_cannot_be_synced_is_an_error_naming_it(tmp_path: Path) -> None:
    syncer = _Syncer()
    syncer.submit(tmp_path / "gone")
    with pytest.raises(StoreError, match=re.escape(f"{tmp_path / 'gone'}: cannot write it to the disk")):
        syncer.wait()
    syncer.close()
