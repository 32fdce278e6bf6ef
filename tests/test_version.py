"""One version number: the package's (pyproject.toml's [project] version) is the API's (the OpenAPI info.version)."""
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


def test_the_schema_states_the_version_of_pyproject(client):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]

    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert schema["info"]["version"] == version
