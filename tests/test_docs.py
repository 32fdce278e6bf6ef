"""docs/security.md points to the tests that hold each promise: every test file and test name it cites exists."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECURITY = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
TEST_SOURCES = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py"))


def test_every_test_file_the_security_page_cites_exists():
    cited = set(re.findall(r"tests/[\w/]+\.py", SECURITY))
    assert cited
    assert sorted(path for path in cited if not (ROOT / path).is_file()) == []


def test_every_test_the_security_page_cites_exists():
    cited = {name for name in re.findall(r"\btest_\w+", SECURITY) if not name.startswith("test_docs")}
    defined = set(re.findall(r"def (test_\w+)", TEST_SOURCES))
    # A file name such as test_api_errors is cited as a path, not as a test.
    files = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    assert sorted(cited - defined - files) == []
