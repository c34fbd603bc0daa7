"""The ``headveil`` command line, generated from the command registry with tyro.

Every module of :mod:`headveil.pipelines` is imported once, which registers its commands
(:func:`headveil.pipelines.commands.command`); each subcommand's options come from its
``…Command`` dataclass. ``headveil COMMAND --help`` lists them. Exit status: see
:mod:`headveil.pipelines.commands` (0 done, 1 some inputs failed, 2 usage error, 3 all failed,
130 interrupted).
"""

from __future__ import annotations

import sys

from headveil.pipelines.commands import COMMANDS, EXIT_INTERRUPTED, EXIT_USAGE


def load_commands() -> dict:
    """``{name: Command}`` of every registered subcommand (imports every module of the package)."""
    import importlib
    import pkgutil

    import headveil.pipelines as pkg

    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if info.name != __name__:
            importlib.import_module(info.name)
    return {name: COMMANDS.get(name) for name in COMMANDS.names()}


def dispatch(cfg) -> int:
    """Run a parsed config with its command; returns the process exit status."""
    for cmd in COMMANDS.names():
        entry = COMMANDS.get(cmd)
        if type(cfg) is entry.config:
            return entry.run(cfg)
    raise TypeError(f"no command takes a {type(cfg).__name__}")  # tyro only returns registered types


def main(argv: list[str] | None = None) -> None:
    import tyro

    from headveil.common.errors import HeadVeilError

    commands = load_commands()
    cfg = tyro.extras.subcommand_cli_from_dict({n: c.config for n, c in commands.items()}, args=argv,
                                               prog="headveil", description="HeadVeil: privacy-preserving 3D heads.")
    _quiet_native_logs()
    try:
        code = dispatch(cfg)
    except HeadVeilError as exc:
        print(f"headveil: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("headveil: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _quiet_native_logs() -> None:
    """Silence the native loggers of MediaPipe / TFLite / absl before they are imported, and show
    Python warnings as one line (``headveil: warning: ...``) instead of file and line."""
    import logging
    import os
    import warnings

    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.showwarning = lambda message, category, *args, **kw: print(f"headveil: warning: {message}",
                                                                         file=sys.stderr)
    logging.basicConfig(level=logging.WARNING, format="headveil: %(levelname)s: %(message)s")
