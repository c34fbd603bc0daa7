"""``headveil keygen --out FILE``: a fresh 256-bit key for ``headveil deid --method id-keyed``.

The key comes from the OS's secure random source and is written as 64 hex digits to a new file
with mode 0600; an existing file is never overwritten (a lost key cannot be recovered, and
replacing one would make every output made with it irreversible).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from headveil.common.errors import HeadVeilError
from headveil.pipelines.commands import command


@dataclass
class KeygenCommand:
    """Write a new secret key (256 bits, hex) to a new file readable only by you."""

    out: Path
    """The key file to create (it must not exist)."""


def run_keygen(cmd: KeygenCommand) -> Path:
    from headveil.geometry.identity.codes import new_key_text

    path = Path(cmd.out)
    if path.exists():
        raise HeadVeilError(f"{path} exists; a key file is never overwritten (choose another name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise HeadVeilError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(new_key_text() + "\n")
    os.chmod(path, 0o600)
    return path


@command("keygen", KeygenCommand)
def _cli(cfg: KeygenCommand) -> int | None:
    print(f"wrote a new 256-bit key to {run_keygen(cfg)} (mode 600); keep it secret and keep a copy: "
          "without it an id-keyed output cannot be recovered")
