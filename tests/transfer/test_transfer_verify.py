"""Streams that verify what they pass on, and decompression with a bound (bombs refused)."""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import pytest
import zstandard

from layerstore.transfer_media import Platform, parse_platform, select_manifest
from layerstore.transfer_verify import (
    BoundedDecompressor,
    ExpansionLimit,
    SizeMismatch,
    VerifyingReader,
    copy_verified,
    digest_of,
    expansion_limit,
)
from pybuild.errors import DigestMismatch, NotFound, ParseError, StoreError

DATA = b"0123456789" * 100_000


def reader(data: bytes, digest: str = digest_of(DATA), size: int = len(DATA)) -> VerifyingReader:
    return VerifyingReader(io.BytesIO(data), digest=digest, size=size, what="blob X")


def test_verifying_reader_passes_the_promised_blob() -> None:
    out = io.BytesIO()
    assert copy_verified(reader(DATA), out) == len(DATA)
    assert out.getvalue() == DATA


def test_a_longer_blob_is_refused_before_its_extra_bytes_are_handed_on() -> None:
    r = reader(DATA + b"!")
    out = io.BytesIO()
    with pytest.raises(SizeMismatch, match=r"blob X: size mismatch: its descriptor says 1000000 bytes, got more"):
        copy_verified(r, out)
    assert len(out.getvalue()) < len(DATA)


def test_a_truncated_stream_is_refused() -> None:
    with pytest.raises(SizeMismatch, match=r"blob X: size mismatch: its descriptor says 1000000 bytes, got 999999 bytes"):
        copy_verified(reader(DATA[:-1]), io.BytesIO())
    hung_up = VerifyingReader(io.BytesIO(DATA[:-1]), digest_of(DATA), len(DATA), what="blob X",
                              truncated=lambda message: NotFound(message))
    with pytest.raises(NotFound, match=r"blob X: stream ended after 999999 of 1000000 bytes"):
        copy_verified(hung_up, io.BytesIO())


def test_store_blobs_are_read_through_the_same_verifying_reader(tmp_path: Path) -> None:
    from layerstore.store import Store

    with Store.open(tmp_path / "s") as store:
        blob = store.blobs.put(DATA)
        with store.blobs.open(blob.digest) as r:
            assert isinstance(r, VerifyingReader) and r.read(0) == b""
        path = store.blobs.path(blob.digest)
        path.chmod(0o644)
        path.write_bytes(DATA[:-1] + b"!")
        with store.blobs.open(blob.digest) as r, pytest.raises(DigestMismatch):
            while r.read(4096):
                pass
        with pytest.raises(SizeMismatch):
            store.blobs.read(blob.digest, size=len(DATA) + 1)


def test_a_stream_with_other_content_is_refused() -> None:
    bad = b"X" + DATA[1:]
    with pytest.raises(DigestMismatch, match=r"blob X: digest mismatch: expected sha256:"):
        copy_verified(reader(bad), io.BytesIO())


def test_a_malformed_digest_is_refused_up_front() -> None:
    with pytest.raises(StoreError, match="malformed digest"):
        reader(DATA, digest="md5:abc")


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_decompression_bomb_is_refused_at_the_limit(compression: str) -> None:
    zeros = b"\0" * (16 * 1024 * 1024)
    packed = gzip.compress(zeros) if compression == "gzip" else zstandard.ZstdCompressor().compress(zeros)
    assert len(packed) < 100_000
    d = BoundedDecompressor(io.BytesIO(packed), compression, limit=1024 * 1024, what="layer L")
    with pytest.raises(ExpansionLimit, match=r"layer L: .* stream expands past 1048576 bytes"):
        while d.read(64 * 1024):
            pass
    assert d.count <= 1024 * 1024 + 64 * 1024


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_bounded_decompression_gives_back_the_stream(compression: str) -> None:
    packed = {"gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress, "none": bytes}[compression](DATA)
    d = BoundedDecompressor(io.BytesIO(packed), compression, limit=len(DATA), what="layer")
    out = b"".join(iter(lambda: d.read(65536), b""))
    assert out == DATA


def test_concatenated_gzip_members_read_as_one_stream() -> None:
    packed = gzip.compress(b"abc") + gzip.compress(b"def")
    d = BoundedDecompressor(io.BytesIO(packed), "gzip", limit=100, what="layer")
    assert b"".join(iter(lambda: d.read(2), b"")) == b"abcdef"


def test_corrupt_gzip_is_a_store_error() -> None:
    packed = bytearray(gzip.compress(DATA))
    packed[20:30] = b"\xff" * 10
    d = BoundedDecompressor(io.BytesIO(bytes(packed)), "gzip", limit=10 * len(DATA), what="layer")
    with pytest.raises(StoreError, match="layer: gzip stream is damaged"):
        while d.read(65536):
            pass
    assert isinstance(zlib.error("x"), Exception)


def test_the_expansion_limit_has_a_floor_and_a_ratio() -> None:
    assert expansion_limit(10) == 1 << 30
    assert expansion_limit(10 << 20) == 1024 * (10 << 20)


INDEX = {
    "schemaVersion": 2,
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "a" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "b" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "c" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "d" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "e" * 64, "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ],
}


@pytest.mark.parametrize("want, letter", [
    ("linux/amd64", "b"), ("linux/arm64", "a"), ("linux/arm64/v8", "a"), ("linux/aarch64", "a"),
    ("linux/arm/v6", "c"), ("linux/arm", "d"), ("linux/arm/v7", "d"), ("linux/x86_64", "b"),
])
def test_platform_selection_picks_the_matching_manifest(want: str, letter: str) -> None:
    assert select_manifest(INDEX, parse_platform(want))["digest"] == "sha256:" + letter * 64


def test_no_matching_platform_lists_what_is_offered() -> None:
    with pytest.raises(NotFound) as e:
        select_manifest(INDEX, Platform("linux", "s390x"))
    assert "no image for linux/s390x" in e.value.message
    assert e.value.hint is not None and "linux/amd64" in e.value.hint and "unknown" not in e.value.hint


def test_bad_platform_text_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_platform("linux")
