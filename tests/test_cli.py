"""`python -m engine` as contract.md specifies it."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
CLOUDTALK = str(ROOT / "rules" / "examples" / "cloudtalk.yaml")
TICKET = {
    "id": "1001",
    "subject": "Calls failing on production",
    "description": "…",
    "status": "open",
    "priority": "urgent",
    "tags": ["vip"],
    "fields": {"plan": "professional"},
    "created_at": "2026-11-20T14:30:00Z",
    "events": [
        {"at": "2026-11-20T15:00:00Z", "type": "comment", "author": "customer", "public": True},
    ],
}


def run(*args, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path, data, name="ticket.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return str(path)


def test_evaluate_file(tmp_path):
    code, out, err = run(
        "evaluate", "--rules", CLOUDTALK, "--ticket", write(tmp_path, TICKET), "--now", "2026-11-21T00:00:00Z"
    )
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["ticket"] == "1001"
    assert result["priority"] == "urgent" and result["priority_rule"] is None
    assert result["policy"] == "professional"
    assert result["targets"]["first_response"]["due"] == "2026-11-23T09:30:00Z"
    assert result["targets"]["first_response"]["state"] == "running"
    assert result["targets"]["resolution"] is None and result["targets"]["next_update"] is None
    assert result["actions"] == []


def test_rules_directory(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "cloudtalk.yaml").write_text(Path(CLOUDTALK).read_text())
    code, out, _ = run(
        "evaluate",
        "--rules",
        str(rules),
        "--ticket",
        write(tmp_path, TICKET),
        "--now",
        "2026-11-21T00:00:00Z",
    )
    assert code == 0 and json.loads(out)["policy"] == "professional"


def test_json_lines_in_order():
    tickets = [dict(TICKET, id=str(n), priority=p) for n, p in enumerate(["urgent", "high", None, "low"])]
    stdin = "\n".join(json.dumps(t) for t in tickets) + "\n\n"
    code, out, _ = run(
        "evaluate", "--rules", CLOUDTALK, "--ticket", "-", "--now", "2026-11-21T00:00:00Z", stdin=stdin
    )
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4
    results = [json.loads(line) for line in lines]
    assert [r["ticket"] for r in results] == ["0", "1", "2", "3"]
    assert [r["priority"] for r in results] == ["urgent", "high", "normal", "low"]
    assert results[2]["actions"][0] == {"type": "set_priority", "value": "normal", "rule": "default-priority"}


def test_default_now_is_the_current_time(tmp_path):
    old = dict(TICKET, created_at="2020-01-06T08:00:00Z", events=[])
    code, out, _ = run("evaluate", "--rules", CLOUDTALK, "--ticket", write(tmp_path, old))
    assert code == 0 and json.loads(out)["targets"]["first_response"]["state"] == "breached"


@pytest.mark.parametrize(
    ("ticket", "expected"),
    [
        ("{not json", "ticket.json:1: invalid JSON"),
        ('{"id": "1", "status": "open"}', "ticket.json:1: created_at: required field is missing"),
        (
            json.dumps(dict(TICKET, created_at="2026-11-20T14:30:00"), indent=2),
            "ticket.json:13: created_at: timestamp needs an offset or Z",
        ),
        (
            json.dumps(dict(TICKET, priority="critical"), indent=2),
            "ticket.json:6: priority: unknown priority",
        ),
        (
            json.dumps(dict(TICKET, status="waiting"), indent=2),
            "ticket.json:5: status: unknown status 'waiting'",
        ),
        (
            json.dumps(dict(TICKET, events=[{"at": "2026-11-20T15:00:00Z", "type": "comment"}]), indent=2),
            "ticket.json:15: events[0].author: a comment needs an author",
        ),
        (
            json.dumps(dict(TICKET, events=[{"at": "2026-11-20T15:00:00Z", "type": "call"}]), indent=2),
            "ticket.json:17: events[0].type: Input should be 'comment' or 'status'",
        ),
        ("[1, 2]", "ticket.json:1: expected a JSON object"),
    ],
)
def test_invalid_ticket(tmp_path, ticket, expected):
    code, out, err = run(
        "evaluate", "--rules", CLOUDTALK, "--ticket", write(tmp_path, ticket), "--now", "2026-11-21T00:00:00Z"
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err


def test_invalid_line_in_batch_names_it():
    stdin = json.dumps(TICKET) + "\n" + json.dumps(dict(TICKET, created_at="yesterday")) + "\n"
    code, out, err = run(
        "evaluate", "--rules", CLOUDTALK, "--ticket", "-", "--now", "2026-11-21T00:00:00Z", stdin=stdin
    )
    assert code == 2 and len(out.splitlines()) == 1
    assert err.startswith("error: -:2: created_at:")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["evaluate", "--rules", "nowhere.yaml", "--ticket", "-"], "nowhere.yaml: no such file"),
        (["evaluate", "--rules", CLOUDTALK, "--ticket", "-", "--now", "soon"], "--now: expected an ISO-8601"),
        (
            ["evaluate", "--rules", CLOUDTALK, "--ticket", "-", "--now", "2026-11-21T00:00:00"],
            "needs an offset",
        ),
        (
            [
                "evaluate",
                "--rules",
                CLOUDTALK,
                "--ticket",
                "/no/such/ticket.json",
                "--now",
                "2026-11-21T00:00:00Z",
            ],
            "cannot read ticket",
        ),
        (["evaluate", "--ticket", "-"], "the following arguments are required: --rules"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_invocations(args, expected):
    code, _, err = run(*args)
    assert code == 2 and expected in err and err.count("\n") == 1


def test_check():
    assert run("check", CLOUDTALK)[0] == 0
    code, _, err = run("check", str(ROOT / "tests" / "fixtures" / "rules" / "unknown_key.yaml"))
    assert code == 2 and "unknown_key.yaml:4: policies[0].calender: unknown key" in err


def test_check_several_rule_sets():
    examples = sorted(str(p) for p in (ROOT / "rules" / "examples").glob("*.yaml"))
    code, out, err = run("check", *examples)
    assert (code, err) == (0, "") and out.count("ok: ") == 5
    bad = str(ROOT / "tests" / "fixtures" / "rules" / "evil.yaml")
    code, out, err = run("check", examples[0], bad)
    assert code == 2 and out.count("ok: ") == 1 and err.count("\n") == 1


def test_real_process_never_prints_a_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "evaluate",
            "--rules",
            str(ROOT / "tests/fixtures/rules/evil.yaml"),
            "--ticket",
            write(tmp_path, TICKET),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "evaluate",
            "--rules",
            CLOUDTALK,
            "--ticket",
            "-",
            "--now",
            "2026-11-21T00:00:00Z",
        ],
        input=json.dumps(TICKET) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert (
        ok.returncode == 0
        and json.loads(ok.stdout)["targets"]["first_response"]["due"] == "2026-11-23T09:30:00Z"
    )


WARNED = """\
version: 1
calendars:
  office: {timezone: Europe/Berlin, hours: {mon-fri: ["09:00-17:00"]}}
levels:
  P1: [urgent]
  P5: []
policies:
  - id: enterprise
    when: {fields: {plan: enterprise}}
    calendar: {field: region, map: {EMEA: office}}
    targets: {first_response: {P1: 1h}}
  - id: everyone
    calendar: office
    targets: {first_response: 8h}
  - id: never
    when: {tags_any: [vip]}
    calendar: office
    targets: {first_response: 2h}
sla_fields:
  first_response: {due: sla_due}
helpdesk:
  zendesk:
    fields: {plan: 9001}
"""


def test_check_warnings(tmp_path):
    path = write(tmp_path, WARNED, "warned.yaml")
    code, out, err = run("check", path)
    assert code == 0 and out.startswith(f"ok: {path}:") and out.rstrip().endswith("; 5 warnings")
    assert err.splitlines() == [
        f"warning: {path}:6: levels.P5: level 'P5' names no priorities: targets under it never apply",
        f"warning: {path}:10: policies[0].calendar: no `default`: tickets whose 'region' is empty or not"
        " one of EMEA get no target from this calendar",
        f"warning: {path}:10: policies[0].calendar.field: field 'region' is not mapped in"
        " helpdesk.zendesk.fields: tickets from Zendesk never carry it,"
        " so the calendar is always the default",
        f"warning: {path}:12: policies[1].id: policy 'everyone' matches every ticket, so the policies after"
        " it never apply: 'never' (give it a `when`, or move it last)",
        f"warning: {path}:20: sla_fields.first_response.due: field 'sla_due' is not mapped in"
        " helpdesk.zendesk.fields: the bot cannot write it",
    ]
    code, out, err = run("check", "--strict", path)
    assert code == 2 and err.count("warning: ") == 5


def test_check_warns_on_unmapped_condition_fields(tmp_path):
    text = WARNED.replace("{fields: {plan: enterprise}}", "{fields: {tier: enterprise}}")
    text = text.replace("fields: {plan: 9001}", "fields: {plan: 9001, region: 9002, sla_due: 9003}")
    text = text.replace("  P5: []\n", "")
    text = text.replace("map: {EMEA: office}", "map: {EMEA: office}, default: office")
    text = text.replace("  - id: everyone\n", "  - id: everyone\n    when: {priority: [low]}\n")
    path = write(tmp_path, text, "fields.yaml")
    code, _, err = run("check", "--strict", path)
    assert code == 2 and err.splitlines() == [
        f"warning: {path}:8: policies[0].when.fields.tier: field 'tier' is not mapped in"
        " helpdesk.zendesk.fields: tickets from Zendesk never carry it, so this condition never matches"
    ]
    mapped = write(tmp_path, text.replace("fields: {plan: 9001,", "fields: {tier: 1, plan: 9001,"), "ok.yaml")
    assert run("check", "--strict", mapped)[:3:2] == (0, "")


def test_check_shipped_rules_have_no_warnings():
    paths = [str(ROOT / "rules"), *sorted(str(p) for p in (ROOT / "rules" / "examples").glob("*.yaml"))]
    code, out, err = run("check", "--strict", *paths)
    assert (code, err) == (0, "") and out.count("ok: ") == len(paths)


def test_check_freshdesk_fields_pass_through_by_their_own_names(tmp_path):
    text = (
        "version: 1\ncalendars:\n  c: {timezone: UTC, hours: 24/7}\npolicies:\n"
        "  - {id: a, when: {fields: {cf_plan: gold}}, calendar: c, targets: {first_response: 1h}}\n"
        "  - {id: b, when: {fields: {tier: gold}}, calendar: c, targets: {first_response: 1h}}\n"
        "helpdesk:\n  freshdesk:\n    groups: {L2: 1}\n"
    )
    path = write(tmp_path, text, "fd.yaml")
    code, _, err = run("check", path)
    assert code == 0 and err.splitlines() == [
        f"warning: {path}:6: policies[1].when.fields.tier: field 'tier' is not mapped in"
        " helpdesk.freshdesk.fields: tickets from Freshdesk never carry it, so this condition never matches"
    ]
