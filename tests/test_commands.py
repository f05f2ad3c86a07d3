"""The `deskpilot` command: the engine's tools and the service's commands, from any directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import commands

ROOT = Path(__file__).resolve().parent.parent
CLOUDTALK = str(ROOT / "rules" / "examples" / "cloudtalk.yaml")
TICKET = ROOT / "docs" / "examples" / "ticket.json"


def test_engine_commands(capsys):
    assert commands.main(["check", CLOUDTALK]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {CLOUDTALK}:")
    assert commands.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Deskpilot rule file"
    assert commands.main(["evaluate", "--rules", CLOUDTALK, "--ticket", str(TICKET),
                          "--now", "2026-11-20T15:00:00Z"]) == 0
    assert set(json.loads(capsys.readouterr().out)["targets"]) >= {"first_response", "next_reply"}


def test_errors_name_the_command(capsys):
    assert commands.main(["evaluate", "--rules", CLOUDTALK]) == 2
    assert capsys.readouterr().err.startswith("error: deskpilot evaluate: ")
    assert commands.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert commands.main([]) == 2 and "deskpilot run" in capsys.readouterr().out
    assert commands.main(["--help"]) == 0


def test_flask_commands_pass_through(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no rules/ here: the project's are used
    monkeypatch.setenv("RULES_PATH", "set by this test")  # so that monkeypatch unsets it afterwards
    monkeypatch.delenv("RULES_PATH")
    monkeypatch.setenv("HELPDESK_SANDBOX", "1")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'd.db'}")
    assert commands.main(["check-rules"]) == 0
    assert "deskpilot.yaml" in capsys.readouterr().out
    assert commands.main(["flask", "check-rules"]) == 0
    monkeypatch.setenv("RULES_PATH", str(ROOT / "tests" / "fixtures" / "rules" / "evil.yaml"))
    assert commands.main(["check-rules"]) == 1
    assert "evil.yaml" in capsys.readouterr().err


def test_rules_path_default_only_when_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("RULES_PATH", "set by this test")  # so that monkeypatch unsets it afterwards
    monkeypatch.delenv("RULES_PATH")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    commands._default_rules()
    assert "RULES_PATH" not in commands.os.environ  # ./rules wins, as the settings say
    (tmp_path / "rules").rmdir()
    commands._default_rules()
    assert commands.os.environ["RULES_PATH"] == str(ROOT / "rules")


SCRIPT = shutil.which("deskpilot", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SCRIPT is None, reason="the project is not installed (pip install -e .)")
def test_installed_script_from_another_directory(tmp_path):
    def run(*args):
        return subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, check=False, timeout=60)

    now = "2026-11-20T15:00:00Z"
    proc = run(SCRIPT, "evaluate", "--rules", CLOUDTALK, "--ticket", str(TICKET), "--now", now)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["policy"] == "professional"
    proc = run(sys.executable, "-m", "engine", "check", CLOUDTALK)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: "), proc.stderr
