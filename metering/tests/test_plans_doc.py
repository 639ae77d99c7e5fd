"""docs/plans.md's worked examples are the engine's figures: every file imports, every price_preview run
prints the JSON shown, every table cell is the amount the preview (or, for a trial and a plan change,
the billing engine) computes. Editing an example without its figures, or the engine, fails here.
"""

import json
import re
import shlex
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from metering.pricing import Segment, parse_plan, parse_plan_file, price_period

DOC = Path(__file__).resolve().parents[2] / "docs/plans.md"


def read_doc():
    """The doc's examples: files by name, (command, expected JSON) runs, usage tables and engine tables."""
    files, runs, usage_tables, engine_tables = {}, [], [], []
    lines = DOC.read_text().splitlines()
    pending_file = last_file = pending_command = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := re.match(r"^File `([\w.-]+)`", line):
            pending_file = match.group(1)
        elif line.startswith("```"):
            language = line[3:].strip()
            end = lines.index("```", index + 1)
            text = "\n".join(lines[index + 1:end])
            index = end
            if language == "json" and pending_file:
                files[pending_file] = text
                last_file, pending_file = pending_file, None
            elif language == "sh" and "price_preview --plan-file" in text and not text.startswith("python manage.py price_preview --plan-file FILE"):
                pending_command = text
            elif language == "json" and pending_command:
                runs.append((pending_command, json.loads(text)))
                pending_command = None
        elif line.startswith("| "):
            table = []
            while index < len(lines) and lines[index].startswith("|"):
                table.append([cell.strip() for cell in lines[index].strip("|").split("|")])
                index += 1
            header, rows = table[0], [row for row in table[2:]]
            if all(cell.startswith("`") and cell.endswith("`") for cell in header):
                usage_tables.append((last_file, [cell.strip("`") for cell in header], rows))
            elif header == ["plan", "line", "amount"]:
                engine_tables.append(rows)
            continue
        index += 1
    return files, runs, usage_tables, engine_tables


FILES, RUNS, USAGE_TABLES, ENGINE_TABLES = read_doc()


def test_the_doc_has_the_examples_this_test_checks():
    assert set(FILES) == {"team.json", "models.json", "currencies.json", "assistant.json", "studio.json"}
    assert len(RUNS) == 8 and len(USAGE_TABLES) == 2 and len(ENGINE_TABLES) == 2


@pytest.fixture
def example_files(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def preview(path, *args) -> dict:
    out = StringIO()
    call_command("price_preview", "--plan-file", str(path), *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_every_example_file_imports_and_reimports_unchanged(example_files):
    for name in FILES:
        call_command("import_plans", str(example_files / name), stdout=StringIO())
        out = StringIO()
        call_command("import_plans", str(example_files / name), stdout=out)
        assert out.getvalue().strip().endswith("nothing changed"), name


@pytest.mark.parametrize("command,expected", RUNS, ids=[f"run{i}" for i in range(len(RUNS))])
def test_every_price_preview_run_prints_the_json_shown(example_files, command, expected):
    words = shlex.split(command)
    assert words[:3] == ["python", "manage.py", "price_preview"]
    args = words[3:]
    file_index = args.index("--plan-file") + 1
    args[file_index] = str(example_files / args[file_index])
    out = StringIO()
    call_command("price_preview", *args, stdout=out)
    assert json.loads(out.getvalue()) == expected


@pytest.mark.parametrize("file,header,rows", USAGE_TABLES, ids=[t[0] for t in USAGE_TABLES])
def test_every_amount_in_the_tables_is_the_previews(example_files, file, header, rows):
    metric, plans = header[0], header[1:]
    checked = 0
    for row in rows:
        quantity, amounts = row[0], row[1:]
        for plan, amount in zip(plans, amounts, strict=True):
            doc = preview(example_files / file, "--plan", plan, "--usage", f"{metric}={quantity}",
                          "--period-start", "2026-11-01")
            (line,) = [line for line in doc["lines"] if line["type"] == "usage"]
            assert line["amount"] == amount, f"{plan} at {metric}={quantity}: {line['amount']}, the doc says {amount}"
            checked += 1
    assert checked == len(rows) * len(plans) >= 8


def _team():
    _metrics, plans = parse_plan_file(json.loads(FILES["team.json"]))
    return plans[0]


def _rows(priced):
    rows = [(line.plan, line.amount) for line in priced.lines]
    return rows + [("", priced.total)]


def _doc_rows(table):
    return [(plan, Decimal(amount)) for plan, _line, amount in table]


def test_the_trial_example_is_the_engines():
    team = _team()
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    priced = price_period([Segment(team, start, end, {"requests": Decimal(60000)})], period_start=start,
                          period_end=end, trial_end=datetime(2026, 11, 8, tzinfo=UTC))
    assert _rows(priced) == _doc_rows(ENGINE_TABLES[0])
    assert [line.type for line in priced.lines][-1] == "minimum_commitment"


def test_the_plan_change_example_is_the_engines():
    team = _team()
    starter = parse_plan({"code": "starter", "name": "Starter", "currency": "USD", "interval": "month",
                          "base_fee": "10.00",
                          "charges": [{"metric": "requests", "model": "per_unit", "unit_amount": "0.0002"}]})
    start, change, end = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 16, tzinfo=UTC),
                          datetime(2027, 1, 1, tzinfo=UTC))
    priced = price_period(
        [Segment(starter, start, change, {"requests": Decimal(100000)}),
         Segment(team, change, end, {"requests": Decimal(250000)})],
        period_start=start, period_end=end,
    )
    assert _rows(priced) == _doc_rows(ENGINE_TABLES[1])
    assert "minimum_commitment" not in [line.type for line in priced.lines]
