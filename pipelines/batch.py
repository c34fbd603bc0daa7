"""Batches over input images: output names, per-input failures, the summary, resuming.

Shared by ``headveil deid`` and ``headveil fit``:

- output names: ``index`` (default: ``0001``, ``0002``, … in the order of the sorted inputs, so an
  output folder does not carry a person's file name) or ``stem`` (the input's file stem, made
  unique when two inputs share one: ``person.jpg`` + ``person.png`` → ``person_jpg``, ``person_png``);
- one input's failure, whatever its cause, is that input's failure and never the batch's;
- ``summary.json`` (mode 0600: it is the only file linking outputs to inputs — keep it, do not share
  it) lists every input's output or failure and what needs attention, is rewritten after every
  input, and is written on Ctrl-C too; ``--resume`` skips the inputs it lists as done.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headveil.common.errors import HeadVeilError
from headveil.common.outputs import write_json

NAMINGS = ("index", "stem")
SUMMARY_NAME = "summary.json"


def output_names(paths: Sequence[Path], naming: str, taken: dict[str, str] | None = None) -> dict[str, str]:
    """A unique output folder name for every input path.

    Args:
        paths: input files, in the batch's order.
        naming: ``index`` or ``stem`` (see the module docstring).
        taken: ``{input path: name}`` already assigned (a resumed batch keeps its names).

    Returns:
        ``{str(path): name}`` for every path.
    """
    if naming not in NAMINGS:
        raise HeadVeilError(f"--names must be one of {', '.join(NAMINGS)}; got {naming!r}")
    taken = dict(taken or {})
    used = set(taken.values())
    out: dict[str, str] = {}
    stems: dict[str, int] = {}
    for p in paths:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    for i, p in enumerate(paths, 1):
        key = str(p)
        if key in taken:
            out[key] = taken[key]
            continue
        if naming == "index":
            n, name = i, f"{i:04d}"
            while name in used:
                n += len(paths)
                name = f"{n:04d}"
        else:
            name = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower() or 'file'}"
            base, k = name, 2
            while name in used:
                name, k = f"{base}_{k}", k + 1
        used.add(name)
        out[key] = name
    return out


@dataclass
class BatchSummary:
    """What a batch did, written as ``summary.json`` in its output root."""

    command: str
    out: Path
    done: dict[str, str] = field(default_factory=dict)
    """``{input path: output name}``."""
    failed: dict[str, str] = field(default_factory=dict)
    """``{input path: one-line reason}``."""
    attention: dict[str, str] = field(default_factory=dict)
    """``{output name: why}``: outputs written but still matched or not detected by a recognizer."""
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False
    extra: dict = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)

    @classmethod
    def load_for_resume(cls, command: str, out: Path) -> BatchSummary:
        """The summary of an earlier run in ``out`` (its done inputs are skipped), or a new one."""
        path = Path(out) / SUMMARY_NAME
        s = cls(command, Path(out))
        if not path.is_file():
            return s
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HeadVeilError(f"{path} is unreadable ({exc}); cannot resume") from None
        if data.get("schema") != cls.SCHEMA or data.get("schema_version") != cls.SCHEMA_VERSION:
            raise HeadVeilError(f"{path} is not a headveil batch summary of version {cls.SCHEMA_VERSION}; cannot resume")
        if data.get("command") != command:
            raise HeadVeilError(f"{path} was written by {data.get('command')!r}, not {command!r}; cannot resume")
        s.done = {k: v for k, v in dict(data.get("done", {})).items()
                  if all((Path(out) / n).is_dir() for n in str(v).split(","))}
        s.attention = {k: v for k, v in dict(data.get("attention", {})).items() if k in s.done.values()}
        return s

    SCHEMA = "headveil.batch-summary"
    SCHEMA_VERSION = 1

    def to_json(self) -> dict:
        return {"schema": self.SCHEMA, "schema_version": self.SCHEMA_VERSION,
                "command": self.command, "out": str(self.out), "done": self.done, "failed": self.failed,
                "attention": self.attention, "notes": self.notes, "interrupted": self.interrupted,
                "seconds": time.perf_counter() - self.t0, **self.extra}

    def write(self) -> None:
        write_json(self.out / SUMMARY_NAME, self.to_json(), private=True)

    @contextlib.contextmanager
    def item(self, path: Path, tag: str) -> Iterator[None]:
        """Run one input: any exception is recorded as that input's failure (and printed as one
        line); Ctrl-C marks the batch interrupted and re-raises; the summary is rewritten after."""
        try:
            yield
        except KeyboardInterrupt:
            self.interrupted = True
            self.write()
            raise
        except Exception as exc:  # one input's failure, whatever its cause, is that input's
            self.failed[str(path)] = failure_text(exc)
            from tqdm import tqdm

            tqdm.write(f"[{tag}] {path}: {self.failed[str(path)]}")
        self.write()


def public_config(cmd) -> dict:
    """A command's resolved config for manifests: no input names or paths, no output path (files
    given as settings, such as a key file, keep their path, never their content)."""
    import dataclasses

    cfg = dataclasses.asdict(cmd)
    cfg["images"] = f"{len(cmd.images)} path(s)"
    cfg["out"] = None
    return cfg


def failure_text(exc: BaseException) -> str:
    """One line for an input's failure: the message of a user error, else the exception's type too."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, HeadVeilError):
        return msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
