"""Schemathesis against the served ``/openapi.json``, in process, on a bounded budget: every operation of both dialects
gets generated requests (from the document's own parameters and bodies) with a valid key and real workspace, space,
data source and dataset ids, and fails on any 5xx, any response the document does not list, or any response body
that does not match the listed schema (issue 11, "What must exist" 4)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.core.failures import Failure
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from alexandria.api.app import create_asgi
from alexandria.config import Settings
from alexandria.domain.models import Role
from alexandria.services.core import Core
from tests.fakes import HashingEmbedder

# per operation (~106 operations): under a minute on a 2-core machine; raise it for a longer hunt
EXAMPLES = int(os.environ.get("ALEXANDRIA_FUZZ_EXAMPLES", "25"))

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api(settings: Settings, core: Core) -> Iterator[Api]:
    core.embedders.register("minilm", HashingEmbedder())
    ws, space = core.catalog.ensure_workspace("fuzz")
    ds = core.catalog.create_data_source(ws, "docs", embedder="fake")
    _, key = core.keys.create(ws, Role.ADMIN)
    app = create_asgi(settings, core)
    with TestClient(app) as client:
        made = client.post("/v1/datasets", json={"name": "kb"}, headers={"Authorization": f"Bearer {key}"})
        assert made.status_code == 200, made.text
        fixed = {"wId": ws.sid, "spaceId": space.sid, "dsId": ds.sid, "dataset_id": made.json()["id"],
                 "vector_store_id": "vs_" + made.json()["id"]}  # fmt: skip
        yield Api(schemathesis.openapi.from_asgi("/openapi.json", app), fixed, {"Authorization": f"Bearer {key}"})


@dataclass(frozen=True)
class Api:
    schema: Any
    path_ids: dict[str, str]  # real ids: generated ones would only ever reach the 404s
    headers: dict[str, str]


def strategy(operation: Any) -> Any:
    """Requests that fit the document, and requests that do not (wrong types, missing or extra fields)."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    try:
        return positive | operation.as_strategy(GenerationMode.NEGATIVE)
    except Exception:  # an operation with nothing to get wrong
        return positive


def run_operation(api: Api, operation: Any) -> list[str]:
    """Runs ``operation`` on its generated cases; the failures found (empty if none)."""
    failures: list[str] = []

    @hypothesis.given(case=strategy(operation))
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def run(case: Any) -> None:
        for name in case.path_parameters or {}:
            if name in api.path_ids:
                case.path_parameters[name] = api.path_ids[name]
        try:
            case.call_and_validate(checks=CHECKS, headers=api.headers)
        except (Failure, BaseExceptionGroup) as exc:  # a check failed
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
        except Exception as exc:  # the app raised (the test client re-raises what it answered 500 for)
            failures.append(f"{operation.label}: 500: {type(exc).__name__}: {exc}"[:1500])

    run()
    return failures


def test_served_schema_tells_the_truth(api: Api) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api.schema.get_all_operations()]
    assert len(operations) > 100
    for operation in operations:
        failures += run_operation(api, operation)
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
