"""Browser tests (Playwright driving Debian's Chromium). Their screenshots are test artifacts: written under
`test-artifacts/screenshots/` at the repository root (ignored by git; `LOYALTY_TEST_ARTIFACTS` moves it), kept
after the run for a person or CI to look at."""
import os
from pathlib import Path

ARTIFACTS = Path(os.environ.get("LOYALTY_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")


def artifact(name: str) -> str:
    """The path to save a screenshot called `name` under the artifacts folder (created if missing)."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / name)
