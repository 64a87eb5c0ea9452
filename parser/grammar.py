"""Loading `buildfile.lark`, built once and then read from a private cache file.

The LALR tables are cached (Lark's `cache=`) in `$XDG_CACHE_HOME/pybuild` (default
`~/.cache/pybuild`), so `pybuild parse` does not rebuild the grammar on every run. Lark's cache is a
pickle, and loading a pickle someone else wrote runs their code: the file is only used when its
directory belongs to us and nobody else can write to it (never a shared `/tmp`). Without such a
directory the grammar is simply built in memory (about 10 ms). Lark itself is imported here, on
first use, so importing `parser` stays cheap.
"""

from __future__ import annotations

import os
import stat
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lark import Lark

GRAMMAR = Path(__file__).with_name("buildfile.lark")


def _private_cache_dir() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative (which the XDG spec says to ignore)
        home = os.path.expanduser("~")
        if not os.path.isdir(home):  # never create a home directory
            return None
        base = os.path.join(home, ".cache")
    path = Path(base) / "pybuild"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return path


@cache
def buildfile_grammar() -> Lark:
    """The LALR parser for `buildfile.lark` (start rules `instruction` and `json_text`)."""
    import lark

    cache: str | bool = False
    directory = _private_cache_dir()
    if directory is not None:
        version = f"{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
        cache = str(directory / f"buildfile-{version}.lark-cache")
    return lark.Lark.open(str(GRAMMAR), parser="lalr", lexer="contextual", start=["instruction", "json_text"],
                          cache=cache)
