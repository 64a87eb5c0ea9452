"""How the CLI shows things to people, as the docker CLI does (pybuild/formatting.py)."""

from __future__ import annotations

import pytest

from pybuild.formatting import PS_HEADER, human_duration, human_size, ps_rows, status_text, table
from runner import state


@pytest.mark.parametrize(
    "seconds, text",
    [(-3, "Less than a second"), (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
     (60, "About a minute"), (150, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"),
     (5399, "About an hour"), (5400, "2 hours"), (7200, "2 hours"), (3 * 86400, "3 days"),
     (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years")],
)
def test_human_duration_is_go_units(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    "size, text",
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (2_130_000, "2.13MB"), (1_500_000_000, "1.5GB"), (10**18, "1e+03PB")],
)
def test_human_size_is_three_significant_digits_in_decimal_units(size: float, text: str) -> None:
    assert human_size(size) == text


def test_tables_pad_every_column_but_the_last_to_at_least_ten() -> None:
    assert table([("A", "LONGER HEADER", "LAST"), ("x", "y", "")]).splitlines() == [
        "A         LONGER HEADER   LAST",
        "x         y               ",
    ]
    assert table([]) == ""


def test_ps_table_is_laid_out_as_docker_does() -> None:
    rec = state.ContainerState(
        id="a" * 64, name="bold_turing", created="2024-01-01T00:00:00.000000000Z", image="busybox",
        image_digest="sha256:x", image_id="sha256:y",
        config=state.RunConfig(argv=("sh", "-c", "while true; do sleep 1; done")),
        status=state.EXITED, exit_code=3, finished_at="2024-01-01T00:00:10.000000000Z",
    )
    now = state.parse_time("2024-01-01T00:01:00Z")
    assert now is not None
    assert table([PS_HEADER, *ps_rows([rec], now)]).splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND                  CREATED              STATUS                      PORTS     NAMES",
        'aaaaaaaaaaaa   busybox   "sh -c \'while true; …"   About a minute ago   Exited (3) 50 seconds ago             bold_turing',
    ]
    unknown = status_text(state.ContainerState(**{**rec.__dict__, "exit_code": state.UNKNOWN_EXIT}), now)
    assert unknown.startswith("Exited (unknown)")
