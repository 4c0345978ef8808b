"""The project's Python reads clean to pyflakes: no unused imports or variables, no undefined names,
no f-strings without placeholders. Checked over every tracked file, so a slip fails CI here."""

import subprocess
from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[1]


class Collected(Reporter):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def unexpectedError(self, filename, message) -> None:
        self.messages.append(f"{filename}: {message}")

    def syntaxError(self, filename, message, lineno, offset, text) -> None:
        self.messages.append(f"{filename}:{lineno}: {message}")

    def flake(self, message) -> None:
        self.messages.append(str(message))


def test_pyflakes_finds_nothing_in_the_tracked_python_files():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [ROOT / name for name in tracked.stdout.split()]
    assert len(files) > 50
    report = Collected()
    for path in files:
        checkPath(str(path), report)
    assert report.messages == []


def test_the_check_reports_what_it_should(tmp_path):
    sloppy = tmp_path / "sloppy.py"
    sloppy.write_text('import os\nprint(f"no placeholders")\nprint(undefined_name)\n')
    report = Collected()
    checkPath(str(sloppy), report)
    text = "\n".join(report.messages)
    assert "'os' imported but unused" in text and "undefined name 'undefined_name'" in text
    assert "f-string is missing placeholders" in text


# What each package may import of the project's own: the flow features <- models <- training / serving,
# monitoring (pure figures over frames) beside models, bulk scoring above training and serving (it
# applies the service's validation and reasons to whole books), and the command line above them all.
ALLOWED_IMPORTS = {"features": set(), "models": {"features"}, "monitoring": {"features", "models"},
                   "training": {"features", "models", "monitoring"}, "serving": {"features", "models", "monitoring"},
                   "bulk": {"features", "models", "monitoring", "training", "serving"},
                   "cli": {"features", "models", "monitoring", "training", "serving", "bulk"}}


def project_imports(path: Path) -> set[str]:
    """The project's top-level packages a file imports, anywhere in it (inside functions too)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED_IMPORTS)


def test_each_package_imports_only_what_the_flow_allows():
    wrong = []
    for package, allowed in ALLOWED_IMPORTS.items():
        for path in sorted((ROOT / package).rglob("*.py")):  # a package not made yet has no files
            for imported in sorted(project_imports(path) - allowed - {package}):
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert wrong == []


def test_the_flow_check_sees_an_import_inside_a_function(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f():\n    from serving.store import ClaimStore\n    import training.train\n")
    assert project_imports(sneaky) == {"serving", "training"}
