"""Container names: Docker's rule for given names, and `adjective_surname` ones when none is given
(as Docker's namesgenerator does, with a shorter list)."""

from __future__ import annotations

import os
import re

from pybuild.errors import RuntimeError_

NAME_PATTERN = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = (
    "admiring", "agitated", "amazing", "bold", "brave", "busy", "clever", "cool", "dazzling", "eager",
    "ecstatic", "elegant", "epic", "festive", "focused", "friendly", "gallant", "gentle", "happy",
    "hopeful", "jolly", "keen", "kind", "laughing", "lucid", "magical", "modest", "nifty", "nostalgic",
    "peaceful", "pensive", "quirky", "relaxed", "serene", "sharp", "stoic", "sweet", "tender", "trusting",
    "upbeat", "vibrant", "wizardly", "youthful", "zealous",
)
_RIGHT = (
    "agnesi", "albattani", "banach", "bardeen", "bell", "blackwell", "booth", "curie", "darwin", "dijkstra",
    "einstein", "euler", "fermat", "feynman", "franklin", "galileo", "gauss", "goldberg", "hamilton",
    "hopper", "hypatia", "jepsen", "kepler", "knuth", "lamarr", "lovelace", "mccarthy", "meitner",
    "noether", "pasteur", "perlman", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak",
    "yalow",
)


def check_name(name: str) -> str:
    """The name without a leading slash; RuntimeError_ if Docker would refuse it."""
    if not NAME_PATTERN.match(name):
        raise RuntimeError_(f"invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def random_hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


def _choice(words: tuple[str, ...]) -> str:
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]


def random_name() -> str:
    return f"{_choice(_LEFT)}_{_choice(_RIGHT)}"
