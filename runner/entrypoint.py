"""The command a container runs, from the image's ENTRYPOINT and CMD and the `run` arguments
(dockerfile-features F85; Docker's "Understand how CMD and ENTRYPOINT interact").

- argv = entrypoint + cmd. Run arguments replace the image's CMD.
- `--entrypoint X` replaces the image's ENTRYPOINT with the single word X and clears the image's
  CMD (only run arguments follow it); `--entrypoint ''` removes the entrypoint.
- A shell-form ENTRYPOINT is stored as `["/bin/sh", "-c", "cmd"]`, so CMD and run arguments become
  `$0 $1 ...` of that shell, i.e. they are ignored, as Docker documents: no special case needed.
- With neither, there is nothing to run: an error, as `docker run` has.
"""

from __future__ import annotations

from collections.abc import Sequence

from pybuild.errors import RuntimeError_


def container_argv(
    image_entrypoint: Sequence[str] | None,
    image_cmd: Sequence[str] | None,
    run_args: Sequence[str] = (),
    entrypoint_override: str | None = None,
) -> list[str]:
    """The argv of the container's PID 1 (before any --init). Pure.

    `entrypoint_override` is the `--entrypoint` value (None: not given; "": clear it).
    Raises RuntimeError_ when the result is empty.
    """
    if entrypoint_override is not None:
        entrypoint: list[str] = [entrypoint_override] if entrypoint_override else []
        cmd = list(run_args)
    else:
        entrypoint = list(image_entrypoint or [])
        cmd = list(run_args) if run_args else list(image_cmd or [])
    argv = entrypoint + cmd
    if not argv:
        raise RuntimeError_("no command specified", hint="give a command after the image name, or set CMD/ENTRYPOINT in the image")
    return argv


def command_string(argv: Sequence[str]) -> str:
    """The COMMAND column of `ps`: the words joined by spaces, as docker ps shows them."""
    return " ".join(argv)
