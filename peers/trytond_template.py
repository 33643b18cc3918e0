"""What both trytond peers' template builders share (run by the peers' own interpreters, so
stdlib only): the fingerprint that says when a template is stale, the trytond config, and the
one trytond-admin run that initialises a SQLite database and activates the modules."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path


def fingerprint(requirements: Path, builder: Path, distributions: Sequence[str]) -> str:
    """Changes whenever the pins, the builder, this file or an installed package changes."""
    digest = hashlib.sha256()
    for part in (requirements, builder, Path(__file__)):
        digest.update(part.read_bytes())
    for name in distributions:
        digest.update(f"{name}=={metadata.version(name)}\n".encode())
    return digest.hexdigest()


def write_config(db_dir: Path) -> Path:
    conf = db_dir / "trytond.conf"
    conf.write_text(
        "[database]\n"
        "uri = sqlite://\n"
        f"path = {db_dir}\n"
        "[web]\n"
        "listen = 127.0.0.1:8000\n"
        "[session]\n"
        "timeout = 3600\n"
    )
    return conf


def activate_modules(
    conf: Path, db_dir: Path, name: str, modules: Sequence[str], password: str, email: str
) -> None:
    """One trytond-admin run: initialises the empty file and activates the modules."""
    db_file = db_dir / f"{name}.sqlite"
    db_file.unlink(missing_ok=True)
    db_file.touch()  # the SQLite backend refuses a missing file
    with tempfile.NamedTemporaryFile("w", suffix=".pass", delete=False) as passfile:
        passfile.write(password + "\n")
    try:
        admin = Path(sys.executable).with_name("trytond-admin")
        subprocess.run(  # noqa: S603 - the peer's own trytond-admin
            [str(admin), "-c", str(conf), "-d", name, "-u", *modules]
            + ["--activate-dependencies", "--email", email],
            check=True,
            env={**os.environ, "TRYTONPASSFILE": passfile.name},
        )
    finally:
        os.unlink(passfile.name)
