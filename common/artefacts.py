"""Typed artefacts: a stage's result as a dataclass that saves itself as JSON with a schema name and
version, and loads back through the same type.

Subclasses are dataclasses whose fields hold JSON-ready values (numbers, strings, lists, dicts);
they set :attr:`Artefact.SCHEMA` and :attr:`Artefact.SCHEMA_VERSION`. ``load`` refuses another
schema or version with one clear :class:`ArtefactError` instead of a ``KeyError`` three stages later.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from headveil.common.errors import HeadVeilError
from headveil.common.outputs import to_jsonable, write_json

A = TypeVar("A", bound="Artefact")


class ArtefactError(HeadVeilError, ValueError):
    """A file is not the artefact it should be (other schema, other version, missing fields)."""


class Artefact:
    """Mixin for dataclass artefacts (see the module docstring)."""

    SCHEMA: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    def to_json(self) -> dict:
        body = {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {"schema": self.SCHEMA, "schema_version": self.SCHEMA_VERSION, **body}

    @classmethod
    def from_json(cls: type[A], data: dict, source: str = "<json>") -> A:
        if not isinstance(data, dict) or data.get("schema") != cls.SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ArtefactError(f"{source} is not a {cls.SCHEMA} file (schema {got!r})")
        if data.get("schema_version") != cls.SCHEMA_VERSION:
            raise ArtefactError(f"{source} has {cls.SCHEMA} version {data.get('schema_version')}; this headveil reads "
                                f"version {cls.SCHEMA_VERSION}")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        required = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ArtefactError(f"{source}: {cls.SCHEMA} lacks {', '.join(missing)}")
        return cls(**{n: data[n] for n in names if n in data})

    def save(self, path: str | os.PathLike, private: bool = False) -> Path:
        write_json(path, self.to_json(), private=private)
        return Path(path)

    @classmethod
    def load(cls: type[A], path: str | os.PathLike) -> A:
        path = Path(path)
        try:
            data: Any = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtefactError(f"cannot read {path}: {exc}") from None
        return cls.from_json(data, str(path))
