"""Moving images: save, load, push, pull, login, logout.

Each opens the store (shared lock) and calls layerstore's transfer modules; progress goes to
stderr, results (loaded names, pushed digests) to stdout.
"""

from __future__ import annotations

import gc
import sys

import click

from pybuild.cli import Globals

TLS_VERIFY = click.option(
    "--tls-verify", type=click.BOOL, default=True, show_default=True,
    help="Check the registry's TLS certificate (false also allows plain http). localhost and "
    "127.0.0.1 use plain http anyway.",
)


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


def _imported() -> None:
    """Call once the command's modules are imported: they live as long as the process, so the
    collector need not walk them again, neither during the transfer nor at exit (where walking
    them cost ~15 ms of a pull's ~0.6 s)."""
    gc.freeze()


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", default="-", show_default=True, help="File, directory (oci-dir) or - for stdout.")
@click.option("--format", "fmt", type=click.Choice(["oci", "oci-dir", "docker"]), default="oci", show_default=True,
              help="OCI layout as a tar (oci) or a directory (oci-dir), or a docker archive.")
@click.option("--compression", type=click.Choice(["zstd", "gzip"]), default=None,
              help="Convert layers to this compression (default: as stored; gzip for docker).")
@click.option("--since", metavar="IMAGE", help="Write only the layers IMAGE lacks (an incremental bundle).")
@click.pass_obj
def save(g: Globals, images: tuple[str, ...], output: str, fmt: str, compression: str | None, since: str | None) -> None:
    """Write IMAGES to an OCI layout or a docker archive."""
    from layerstore.store import Store
    from layerstore.transfer import save as do_save

    if output == "-" and fmt != "oci-dir" and sys.stdout.isatty():
        raise click.UsageError("refusing to write an archive to a terminal; use -o FILE or a pipe")
    _imported()
    with Store.open(g.root) as store:
        written = do_save(store, images, output, fmt=fmt, compression=compression, since=since,
                          stdout=sys.stdout.buffer)
    if output != "-":
        for p in written:
            click.echo(f"{', '.join(p.names) or p.manifest_digest} -> {output}", err=True)


@click.command()
@click.option("-i", "--input", "source", default="-", show_default=True, help="File, directory or - for stdin.")
@click.option("--platform", help="OS/ARCH[/VARIANT] to take from a multi-platform archive (default: this machine).")
@click.pass_obj
def load(g: Globals, source: str, platform: str | None) -> None:
    """Read images from an OCI layout (tar or directory) or a docker archive."""
    from layerstore.store import Store
    from layerstore.transfer import load as do_load
    from layerstore.transfer_media import parse_platform
    from layerstore.transfer_libc import keep_freed_buffers

    if source == "-" and sys.stdin.isatty():
        raise click.UsageError("refusing to read an archive from a terminal; use -i FILE or a pipe")
    keep_freed_buffers()
    _imported()
    with Store.open(g.root) as store:
        loaded = do_load(store, source, stdin=sys.stdin.buffer, platform=parse_platform(platform) if platform else None)
    for item in loaded:
        if item.names:
            for name in item.names:
                click.echo(f"Loaded image: {name}")
        else:
            click.echo(f"Loaded image ID: {item.image.digest}")


@click.command()
@click.argument("image")
@click.argument("destination", required=False)
@TLS_VERIFY
@click.option("--compression", type=click.Choice(["zstd", "gzip"]), default=None,
              help="Convert layers to this compression first (default: as stored).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the pushed digest.")
@click.pass_obj
def push(g: Globals, image: str, destination: str | None, tls_verify: bool, compression: str | None, quiet: bool) -> None:
    """Upload IMAGE to a registry, as DESTINATION (REGISTRY/REPO:TAG) if given."""
    from layerstore.store import Store
    from layerstore.transfer_registry import push_image

    _imported()
    with Store.open(g.root) as store:
        pushed = push_image(store, image, destination, compression=compression, tls_verify=tls_verify,
                            progress=(lambda _: None) if quiet else _progress)
    click.echo(pushed.digest)


@click.command()
@click.argument("reference")
@click.option("--platform", help="OS/ARCH[/VARIANT] to take from a multi-platform image (default: this machine).")
@TLS_VERIFY
@click.option("-q", "--quiet", is_flag=True, help="Print only the image digest.")
@click.pass_obj
def pull(g: Globals, reference: str, platform: str | None, tls_verify: bool, quiet: bool) -> None:
    """Download REFERENCE (busybox, registry:5000/app:1, app@sha256:...) from a registry."""
    from layerstore.store import Store
    from layerstore.transfer_media import parse_platform
    from layerstore.transfer_registry import pull_image
    from layerstore.transfer_libc import keep_freed_buffers

    keep_freed_buffers()
    _imported()
    with Store.open(g.root) as store:
        image = pull_image(store, reference, platform=parse_platform(platform) if platform else None,
                           tls_verify=tls_verify, progress=(lambda _: None) if quiet else _progress)
    click.echo(image.digest)


@click.command()
@click.argument("registry", required=False, default="docker.io")
@click.option("-u", "--username", help="User name (asked for when not given).")
@click.option("-p", "--password", help="Password (prefer --password-stdin: this one shows in ps).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@TLS_VERIFY
@click.pass_obj
def login(g: Globals, registry: str, username: str | None, password: str | None, password_stdin: bool,
          tls_verify: bool) -> None:
    """Check credentials with REGISTRY (default docker.io) and store them (0600) for push and pull."""
    from layerstore import auth
    from layerstore.registry import RegistryClient

    if password and password_stdin:
        raise click.UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise click.UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
    if not username or password is None:
        if not sys.stdin.isatty():
            raise click.UsageError("cannot ask for a user name or password: standard input is not a terminal "
                                   "(use -u USER --password-stdin)")
        username = username or click.prompt("Username")
        if password is None:
            password = click.prompt("Password", hide_input=True)
    host = auth.normalize_key(registry)
    creds = auth.Credentials(username, password)
    with RegistryClient(host, tls_verify=tls_verify, credentials=creds) as client:
        client.check_login()
    path = auth.login(host, creds)
    click.echo(f"credentials for {host} stored in {path} (mode 0600, not encrypted)", err=True)
    click.echo("Login Succeeded")


@click.command()
@click.argument("registry", required=False, default="docker.io")
@click.pass_obj
def logout(g: Globals, registry: str) -> None:
    """Forget the credentials stored for REGISTRY (default docker.io)."""
    from layerstore import auth
    from pybuild.errors import PybuildError

    host = auth.normalize_key(registry)
    if auth.logout(host):
        click.echo(f"Removing login credentials for {host}")
        return
    if auth.lookup(host) is not None:
        raise PybuildError(f"the credentials for {host} are in {auth.docker_config_file()}, which pybuild does not "
                           "change", hint=f"docker logout {host}, or edit that file")
    click.echo(f"Not logged in to {host}")
