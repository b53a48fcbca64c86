from __future__ import annotations

from pathlib import Path

import pytest

from alexandria.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    for name, field in Settings.model_fields.items():
        assert f"`ALEXANDRIA_{name.upper()}`" in text, name
        assert field.description, name


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALEXANDRIA_PORT", "9123")
    monkeypatch.setenv("ALEXANDRIA_HYBRID_ALPHA", "0.3")
    s = Settings()
    assert s.port == 9123 and s.hybrid_alpha == 0.3
    assert s.resolved_database_url().startswith("sqlite:///")
