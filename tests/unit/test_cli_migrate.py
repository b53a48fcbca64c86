"""`alexandria migrate` and the `--database-url` option, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from alexandria.cli import main
from alexandria.config import Settings

pytestmark = pytest.mark.backends("sqlite", "postgres")


def test_migrate_brings_the_store_to_the_latest_schema(settings: Settings, tmp_path: Path) -> None:
    from alexandria.storage.postgres.db import migrations as pg_migrations
    from alexandria.storage.sqlite.db import migrations as sqlite_migrations

    url = settings.resolved_database_url()
    latest = (pg_migrations() if url.startswith("postgresql") else sqlite_migrations())[-1][0]
    runner = CliRunner()
    args = ["migrate", "--data-dir", str(settings.data_dir), "--database-url", url]
    for _ in range(2):  # idempotent
        result = runner.invoke(main, args, env={"ALEXANDRIA_DATABASE_URL": None})
        assert result.exit_code == 0, result.output
        assert result.output.strip().splitlines()[-1] == str(latest)
    bad = runner.invoke(main, ["migrate", "--database-url", "mysql://nope"], env={"ALEXANDRIA_DATABASE_URL": None})
    assert bad.exit_code != 0 and "unsupported database URL scheme" in bad.output
