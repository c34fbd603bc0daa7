"""The command registry: every ``headveil`` subcommand registers itself where it is defined.

A command is a config dataclass (named ``…Command``; tyro builds its options from the fields and
their docstrings) and a function that runs a parsed config, prints its one-paragraph summary and
returns the exit status. :mod:`headveil.pipelines.cli` imports every module of this package,
which registers its commands, and builds the command line from :data:`COMMANDS`: adding a
command touches only the module that defines it.

Exit status, the same for every command: :data:`EXIT_OK` 0 all inputs done; :data:`EXIT_PARTIAL`
1 some inputs failed (listed); :data:`EXIT_USAGE` 2 a usage error (one line on stderr, nothing
written); :data:`EXIT_FAILED` 3 every input failed; :data:`EXIT_INTERRUPTED` 130 Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headveil.common.registry import Registry

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclass(frozen=True)
class Command:
    """A registered subcommand: its ``config`` dataclass and ``run(config) -> exit status``."""

    name: str
    config: type
    run: Callable[[Any], int]


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, config: type) -> Callable[[Callable[[Any], int | None]], Callable[[Any], int]]:
    """Decorator: register ``run(config)`` as subcommand ``name`` (a ``None`` return means 0)."""
    if not config.__name__.endswith("Command"):
        raise TypeError(f"command configs are named …Command; got {config.__name__}")

    def deco(fn: Callable[[Any], int | None]) -> Callable[[Any], int]:
        def run(cfg: Any) -> int:
            status = fn(cfg)
            return EXIT_OK if status is None else int(status)

        COMMANDS.register(name, Command(name, config, run))
        return run

    return deco


def batch_status(n_done: int, n_failed: int) -> int:
    """The exit status of a batch: 0 all done, 1 some failed, 3 all failed."""
    if not n_failed:
        return EXIT_OK
    return EXIT_PARTIAL if n_done else EXIT_FAILED
