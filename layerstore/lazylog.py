"""Debug logging that costs nothing until it is switched on.

Importing `logging` costs every command about 3 ms (it imports traceback, textwrap and more),
and pybuild's log calls are all debug or info detail that only `--debug` shows, which is also what
imports and configures logging (pybuild.cli). So a `Logger` here passes its calls on to
`logging.getLogger(name)` only when `logging` has been imported by someone; until then, Python's
own defaults would drop them anyway (no handler, level WARNING).
"""

from __future__ import annotations

import sys


class Logger:
    """`logging.getLogger(name)`, imported on first need; debug/info are dropped while `logging`
    is not imported at all, a warning always goes through it (Python shows warnings unconfigured)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def debug(self, msg: str, *args: object) -> None:
        logging = sys.modules.get("logging")
        if logging is not None:
            logging.getLogger(self.name).debug(msg, *args)

    def info(self, msg: str, *args: object) -> None:
        logging = sys.modules.get("logging")
        if logging is not None:
            logging.getLogger(self.name).info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        import logging

        logging.getLogger(self.name).warning(msg, *args)
