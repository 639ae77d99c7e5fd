"""Every document the project names exists: a `*.md` mentioned in code, templates, help texts, comments
or the documentation itself is a file of the repository (from the top, beside the file naming it, or a
static file's path).

Migrations are history and are not read (an old help text may name what a later one replaced), nor is
this file, whose examples name missing documents on purpose.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".git", ".venv", "node_modules", "var", "artifacts", "cdk.out", "migrations", "__pycache__",
                ".pytest_cache", ".ruff_cache"}
TEXT_SUFFIXES = {".py", ".md", ".html", ".txt", ".json", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".js", ".css", ""}
# Names that are not files of this repository, each with the reason.
NOT_OURS = {
    ("portal/static/vendor/chartjs/README.md", "package/LICENSE.md"): "a path inside the npm tarball being vendored",
}
STATIC_DIRS = [ROOT / "portal" / "static"]
NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def project_files():
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS for part in relative.parts) or not path.is_file() or path == Path(__file__):
            continue
        if path.suffix in TEXT_SUFFIXES and path.stat().st_size < 2_000_000:
            yield path


def mentions():
    for path in project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for match in NAME.finditer(text):
            yield path, match.group(1)


def test_every_named_document_exists():
    missing = []
    seen = 0
    for path, name in mentions():
        seen += 1
        where = str(path.relative_to(ROOT))
        if (where, name) in NOT_OURS:
            continue
        candidates = [ROOT / name, path.parent / name, *(static / name for static in STATIC_DIRS)]
        if not any(candidate.is_file() for candidate in candidates):
            text = path.read_text(encoding="utf-8")
            missing.append(f"{where}:{text[: text.find(name)].count(chr(10)) + 1} names {name}")
    assert not missing, "documents named but not in the repository:\n" + "\n".join(missing)
    assert seen > 20  # the walk does find the project's mentions


def test_the_plan_format_document_is_named_where_plans_are_edited():
    from tenants.admin import PlanForm

    assert "docs/plans.md" in str(PlanForm.base_fields["document"].help_text)
    assert "(docs/plans.md)" in (ROOT / "README.md").read_text()


def test_the_walk_would_catch_a_missing_document(tmp_path):
    sample = "see docs/nowhere.md and README.md"
    assert [m.group(1) for m in NAME.finditer(sample)] == ["docs/nowhere.md", "README.md"]
    assert not (ROOT / "docs/nowhere.md").exists()


@pytest.mark.django_db
def test_the_admin_links_the_plan_format_and_serves_it_to_staff(client, django_user_model):
    anonymous = client.get("/admin/docs/plans/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1"))
    for page in ("/admin/tenants/plan/add/", "/admin/tenants/metric/add/"):
        assert 'href="/admin/docs/plans/">docs/plans.md</a>' in client.get(page).content.decode(), page
    served = client.get("/admin/docs/plans/")
    assert served.status_code == 200 and served["Content-Type"] == "text/plain; charset=utf-8"
    assert served.content.decode() == (ROOT / "docs/plans.md").read_text(encoding="utf-8")
