"""Issue 16: stopping ``make run`` must not leave the demo's trytond running, and the CLI's
``erp`` commands find the ERP a running demo started.

The peer here is a stand-in executable named ``trytond`` (a real Tryton is what
tests/peers run): it answers the readiness call, or never does (``SILENT``)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from medbridge.cli import main
from medbridge.demo.erp import CONNECTION, DemoErp, _is_trytond, connection
from medbridge.demo.wiring import running_demo_erp
from medbridge.settings import Settings

FAKE_TRYTOND = """\
#!{python}
import http.server, os, sys, time
if os.environ.get("FAKE_TRYTOND_SILENT") or {silent}:
    time.sleep(600)
conf = open(sys.argv[2]).read()
port = int(conf.split("listen = 127.0.0.1:")[1].split()[0])

class Answer(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{{"id": 0, "result": "7.0"}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Answer).serve_forever()
"""


def fake_peer(root: Path, *, silent: bool = False) -> Path:
    peer = root / "peer"
    (peer / "bin").mkdir(parents=True)
    (peer / "db").mkdir()
    (peer / ".installed").write_text("")
    (peer / "db" / "template.sqlite").write_bytes(b"")
    (peer / "db" / "template.json").write_text(
        json.dumps({"admin_login": "admin", "admin_password": "pw"})
    )
    script = peer / "bin" / "trytond"
    script.write_text(FAKE_TRYTOND.format(python=sys.executable, silent=silent))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return peer


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone(process: subprocess.Popen[bytes] | int) -> bool:
    """Whether the process ended (reaped if it is our child)."""
    if isinstance(process, subprocess.Popen):
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            return False
        return True
    for _ in range(150):
        if not alive(process):
            return True
        threading.Event().wait(0.1)
    return False


def test_a_demo_erp_stopped_while_it_starts_leaves_no_server(tmp_path: Path) -> None:
    demo = DemoErp(tmp_path / "var", fake_peer(tmp_path, silent=True))
    stop = threading.Event()
    failed: list[Exception] = []

    def start() -> None:
        try:
            demo.wait_and_start(stop, poll=0.05)
        except RuntimeError as error:
            failed.append(error)

    starting = threading.Thread(target=start)
    starting.start()
    while demo._process is None and starting.is_alive():  # the server under way
        threading.Event().wait(0.05)
    process = demo._process
    assert process is not None
    stop.set()
    starting.join(30)
    assert not starting.is_alive()
    assert failed
    assert "stopped while" in str(failed[0])
    demo.stop()
    assert gone(process)


def test_a_running_demo_erp_is_found_by_the_cli_and_gone_after_stop(tmp_path: Path) -> None:
    var = tmp_path / "var"
    demo = DemoErp(var, fake_peer(tmp_path))
    server = demo.start()
    written = var / "tryton" / CONNECTION
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # it holds the ERP's password
    assert connection(var) == {
        "url": server.url,
        "database": "medbridge_demo_erp",
        "user": "admin",
        "password": "pw",
    }
    config = running_demo_erp(Settings(var_dir=var))
    assert config is not None
    assert str(config.url) == server.url
    demo.stop()
    assert gone(server.process)
    assert not written.exists()
    assert connection(var) is None
    assert running_demo_erp(Settings(var_dir=var)) is None


def test_a_server_left_by_a_killed_run_is_stopped_and_a_new_one_dies_with_its_parent(
    tmp_path: Path,
) -> None:
    var, peer = tmp_path / "var", fake_peer(tmp_path)
    # a run that is SIGKILLed after its demo ERP started: nothing of it can clean up
    run = textwrap.dedent(
        f"""
        import sys, threading
        from pathlib import Path
        from medbridge.demo.erp import DemoErp
        server = DemoErp(Path({str(var)!r}), Path({str(peer)!r})).start()
        print("pid", server.process.pid, flush=True)
        threading.Event().wait(600)
        """
    )
    killed = subprocess.Popen([sys.executable, "-c", run], stdout=subprocess.PIPE)
    try:
        assert killed.stdout is not None
        first = next(int(ln.split()[1]) for ln in killed.stdout if ln.startswith(b"pid "))
        assert alive(first)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(15)
    assert gone(first)  # the kernel told it: its parent died (PR_SET_PDEATHSIG)

    # one that outlived its run anyway (started before this release, or the signal missed)
    stale = subprocess.Popen(
        [str(peer / "bin" / "trytond"), "-c", "/dev/null"],
        env={**os.environ, "FAKE_TRYTOND_SILENT": "1"},
        start_new_session=True,
    )
    while not _is_trytond(stale.pid):  # exec'd (a stale server has run for a while)
        threading.Event().wait(0.01)
    (var / "tryton").mkdir(parents=True, exist_ok=True)
    (var / "tryton" / CONNECTION).write_text(
        json.dumps(
            {
                "url": "http://127.0.0.1:1/",
                "database": "d",
                "user": "u",
                "password": "p",
                "pid": stale.pid,
            }
        )
    )
    demo = DemoErp(var, peer)
    try:
        server = demo.start()
        assert gone(stale)
        found = connection(var)
        assert found is not None
        assert found["url"] == server.url
    finally:
        demo.stop()
        stale.kill()
        stale.wait(15)


def test_erp_commands_without_an_erp_say_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDBRIDGE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MEDBRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'mb.db'}")
    monkeypatch.setenv("MEDBRIDGE_LOG_JSON", "false")
    monkeypatch.delenv("MEDBRIDGE_ERP_URL", raising=False)
    monkeypatch.setattr(sys, "argv", ["medbridge", "erp", "reconcile", "2026-11"])
    with pytest.raises(SystemExit) as ended:
        main()
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert "no ERP 'tryton': set MEDBRIDGE_ERP_URL" in err
    assert "url in the erps.tryton table" in err
    assert "medbridge run --demo" in err
