"""What both trytond peers' template builders share (run by the peers' own interpreters, so
stdlib only): the fingerprint that says when a template is stale, the trytond config, the
one trytond-admin run that initialises a SQLite database and activates the modules, and the
whole build (``Peer.build``) and command line (``Peer.main``). A builder script defines its
``Peer``: its modules, its admin password and its ``seed`` function (run in a child process,
so that the building process never holds trytond's pool on the file)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

TEMPLATE = "template"
BUILD = "template_build"


def fingerprint(
    requirements: Path, builder: Path, distributions: Sequence[str], sources: Sequence[Path] = ()
) -> str:
    """Changes whenever the pins, the builder (and the ``sources`` it runs), this file or an
    installed package changes."""
    digest = hashlib.sha256()
    for part in (requirements, builder, *sources, Path(__file__)):
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


def _always(meta: dict[str, object]) -> bool:
    return True


@dataclass(frozen=True)
class Peer:
    """One peer's template: what differs between the GNU Health and the Tryton builders."""

    name: str
    """``gnuhealth`` or ``tryton``: the default folder is ``.peers/<name>/db``."""
    script: Path
    """The builder script: fingerprinted, and re-run as a child with ``--seed``."""
    modules: Sequence[str]
    distributions: Sequence[str]
    admin_password: str
    seed: Callable[[Path, str], dict[str, object]]
    """Seeds the activated database ``name`` under config ``conf``; returns facts for the
    fixtures (ids, codes), merged into ``template.json``."""
    still_current: Callable[[dict[str, object]], bool] = _always
    """Beyond the fingerprint: does a built template still serve (e.g. its fiscal year)?"""
    admin_login: str = "admin"
    admin_email: str = "admin@example.com"
    sources: Sequence[Path] = ()
    """Other files the builder runs (e.g. a seed shared with another peer): fingerprinted."""

    def fingerprint(self) -> str:
        return fingerprint(
            self.script.parent / "requirements.txt", self.script, self.distributions, self.sources
        )

    def build(self, db_dir: Path, stamp: str) -> dict[str, object]:
        """Build into a scratch database, then rename into place: a crash never leaves a
        half-built template behind."""
        conf = write_config(db_dir)
        started = time.monotonic()
        activate_modules(conf, db_dir, BUILD, self.modules, self.admin_password, self.admin_email)
        activated = time.monotonic()
        seeded = subprocess.run(  # noqa: S603 - this peer's own builder
            [sys.executable, str(self.script), "--seed", str(conf), BUILD],
            check=True,
            capture_output=True,
            text=True,
        )
        facts = json.loads(seeded.stdout.strip().splitlines()[-1])
        os.replace(db_dir / f"{BUILD}.sqlite", db_dir / f"{TEMPLATE}.sqlite")
        meta = {
            "fingerprint": stamp,
            "database": TEMPLATE,
            "admin_login": self.admin_login,
            "admin_password": self.admin_password,
            "versions": {name: metadata.version(name) for name in self.distributions},
            "built_at": dt.datetime.now(dt.UTC).isoformat(),
            "seconds": {
                "activate": round(activated - started, 1),
                "seed": round(time.monotonic() - activated, 1),
            },
            **facts,
        }
        tmp = db_dir / "template.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, db_dir / "template.json")
        return meta

    def main(self, argv: list[str], description: str) -> int:
        parser = argparse.ArgumentParser(description=description)
        default_dir = self.script.resolve().parents[2] / ".peers" / self.name / "db"
        parser.add_argument("--dir", type=Path, default=default_dir)
        parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
        parser.add_argument("--seed", nargs=2, metavar=("CONF", "DB"), help=argparse.SUPPRESS)
        args = parser.parse_args(argv)
        if args.seed:
            conf, name = args.seed
            print(json.dumps(self.seed(Path(conf), name)))
            return 0
        db_dir = args.dir.resolve()
        db_dir.mkdir(parents=True, exist_ok=True)
        stamp = self.fingerprint()
        meta_file, template = db_dir / "template.json", db_dir / f"{TEMPLATE}.sqlite"
        if not args.force and meta_file.exists() and template.exists():
            meta = json.loads(meta_file.read_text())
            if meta.get("fingerprint") == stamp and self.still_current(meta):
                write_config(db_dir)
                print(f"{self.name} template up to date: {template}")
                return 0
        built = self.build(db_dir, stamp)
        print(f"{self.name} template built in {built['seconds']}: {template}")
        return 0
