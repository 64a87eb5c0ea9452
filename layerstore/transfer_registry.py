"""Pull and push: images between the store and OCI registries.

`pull_image` resolves a reference (an index or manifest list to one platform), downloads the config
and the layers the store lacks (three at a time) into staging, verifies all of them (digests,
diff_ids, and each layer against the extractor's rules), publishes them and tags the image, as
transfer_import promises: a refused pull leaves no tag and no blob. Layers are unpacked when first
used (`Layers.unpack`), not by the pull: a pull that is pushed or saved on never writes the files.
`push_image` uploads the config and layers (each: HEAD, else a mount from another repository of the
same registry that the store knows holds it, else an upload), then the manifest, last.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from layerstore.digests import json_object
from layerstore.images import Image
from layerstore.lazylog import Logger
from layerstore.oci import Descriptor, Manifest
from layerstore.reference import Reference, parse_reference
from layerstore.registry import RegistryClient, open_file_source
from layerstore.store import Store
from layerstore.transfer_import import Incoming, Staging, commit_incoming
from layerstore.transfer_media import Platform
from pybuild.errors import PybuildError, RegistryError

log = Logger(__name__)

PARALLEL = 3  # blobs in flight at once, as Docker does
Progress = Callable[[str], None]
T = TypeVar("T")


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Pushed:
    reference: Reference
    digest: str
    size: int


def pull_image(
    store: Store,
    reference: str,
    *,
    platform: Platform | None = None,
    tls_verify: bool = True,
    progress: Progress = _quiet,
    client: RegistryClient | None = None,
) -> Image:
    """Download `reference` (`busybox`, `localhost:5000/app:1`, `x@sha256:...`) into `store` and tag
    it with its familiar name (not when pulled by digest). The image for `platform` (default: this
    machine's) is chosen from an index. This is what the builder calls for a FROM image that is not
    in the store. Raises RegistryError, DigestMismatch, StoreError, NotFound."""
    ref = parse_reference(reference)
    own = client is None
    client = client or RegistryClient(ref.domain, tls_verify=tls_verify)
    try:
        return _pull(store, client, ref, platform, progress)
    finally:
        if own:
            client.close()


def _pull(store: Store, client: RegistryClient, ref: Reference, platform: Platform | None, progress: Progress) -> Image:
    repo = ref.path
    fetched, index = client.resolve(repo, ref.digest or ref.tag or "latest", platform)
    what = f"{ref.familiar} ({fetched.digest})"
    manifest = Manifest.from_json(json_object(fetched.data, f"manifest of {ref.familiar}"), what)
    progress(f"pulling {ref.familiar}: manifest {fetched.digest}" + (f" from index {index.digest}" if index else ""))
    with Staging(store) as staging:
        wanted = {d.digest: d for d in [manifest.config, *manifest.layers] if not store.blobs.has(d.digest)}

        def fetch(desc: Descriptor) -> None:
            # Staging checks the digest and the size of what arrives; no second hash on the way.
            # The layer is checked, not unpacked: that waits for its first use (see layer_check).
            with client.open_blob(repo, desc.digest, desc.size, verify=False) as body:
                staging.stage(body, what=f"{what}: blob {desc.digest}", size_hint=desc.size,
                              expected=desc.digest, expected_size=desc.size, extract=False)
            progress(f"  blob {desc.digest} ({desc.size} bytes) done")

        _in_parallel(fetch, list(wanted.values()), "pull", cancel=staging.cancel)
        names = (ref.familiar,) if ref.digest is None else ()
        (image,) = commit_incoming(store, staging, [Incoming(fetched.data, fetched.digest, names, source=what)],
                                   instruction=f"pull {ref}")
    return image


def push_image(
    store: Store,
    name: str,
    destination: str | None = None,
    *,
    compression: str | None = None,
    tls_verify: bool = True,
    progress: Progress = _quiet,
    client: RegistryClient | None = None,
) -> Pushed:
    """Upload image `name` to `destination` (default: `name` itself, e.g. `localhost:5000/app:1`).
    Layers go as stored unless `compression` asks for another (the converted blobs are kept in the
    store). Returns the reference and the digest of the manifest pushed."""
    from layerstore.transfer import prepare  # save's machinery: not imported on the pull path

    image = store.resolve(name)
    dest = parse_reference(destination or name)
    if dest.digest is not None:
        raise RegistryError(f"{dest}: push to a tag, not a digest")
    prepared = prepare(store, image, (), compression)
    own = client is None
    client = client or RegistryClient(dest.domain, tls_verify=tls_verify)
    try:
        client.ping()
        sources = _mount_sources(store, dest)
        blobs = [(image.manifest.config.digest, image.manifest.config.size)] + [
            (layer.digest, layer.size) for layer in prepared.layers
        ]
        unique = list(dict.fromkeys(blobs))

        def upload(item: tuple[str, int]) -> None:
            digest, size = item
            candidates = [repo for repo, digests in sources if digest in digests]
            how = client.upload_blob(dest.path, digest, open_file_source(str(store.blobs.path(digest)), size),
                                     mount_from=candidates)
            progress(f"  blob {digest} ({size} bytes) {how}")

        _in_parallel(upload, unique, "push")
        digest = client.put_manifest(dest.path, dest.tag or "latest", prepared.manifest, prepared.media_type)
    finally:
        if own:
            client.close()
    progress(f"pushed {dest.familiar}: {digest}")
    return Pushed(dest, digest, len(prepared.manifest))


def _in_parallel(fn: Callable[[T], None], items: list[T], name: str, *, cancel: Callable[[], None] | None = None) -> None:
    """`fn(item)` for every item, PARALLEL at a time. The first failure (or Ctrl-C) leaves what
    has not started unstarted, asks what runs to stop (`cancel`), and is raised once no thread runs
    any more, so that the caller may remove what they were writing. (Threads, not
    concurrent.futures: that imports logging, ~3 ms of every pull's start-up. Waited for with a
    condition, not Thread.join: CPython 3.11's join, interrupted by Ctrl-C, can take a running
    thread for stopped, bpo-45274.)"""
    pending = list(reversed(items))
    failures: list[BaseException] = []
    done = threading.Condition()
    running = 0

    def stop(failure: BaseException) -> None:
        with done:
            failures.append(failure)
            pending.clear()
        if cancel is not None:
            cancel()

    def work() -> None:
        nonlocal running
        try:
            while True:
                with done:
                    if not pending:
                        return
                    item = pending.pop()
                try:
                    fn(item)
                except BaseException as e:  # noqa: BLE001 - handed to the calling thread below
                    stop(e)
                    return
        finally:
            with done:
                running -= 1
                done.notify_all()

    try:
        # Ctrl-C held back while the threads start (they inherit the mask, so it reaches this
        # thread): one arriving inside Thread.start would leave unknown whether the thread runs.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for i in range(min(PARALLEL, len(items))):
                thread = threading.Thread(target=work, name=f"{name}-{i}", daemon=True)
                with done:
                    running += 1
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had: this one never runs
                    with done:
                        running -= 1
                    raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        with done:
            done.wait_for(lambda: running == 0)
    except BaseException as e:  # Ctrl-C while waiting, or no thread to be had
        stop(e)
        while True:
            try:
                with done:
                    done.wait_for(lambda: running == 0)
                break
            except KeyboardInterrupt:  # another Ctrl-C: the workers are stopping; still wait for them
                continue
        raise
    if failures:
        raise failures[0]


def _mount_sources(store: Store, dest: Reference) -> list[tuple[str, set[str]]]:
    """Other repositories of `dest`'s registry that the store's tags say hold which blobs: an image
    tagged `registry/other:1` here was pulled from or pushed there, so its blobs can be mounted."""
    out: dict[str, set[str]] = {}
    for tag in store.tags.all():
        ref = tag.ref
        if ref.domain != dest.domain or ref.path == dest.path:
            continue
        try:
            image = store.images.get(tag.digest)
        except PybuildError as e:  # a damaged image only costs us a mount
            log.debug("mount source %s skipped: %s", ref, e)
            continue
        out.setdefault(ref.path, set()).update({image.id, *(layer.digest for layer in image.layers)})
    return list(out.items())
