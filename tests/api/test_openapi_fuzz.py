"""Schemathesis against the served ``/openapi.json``, in process, on a bounded budget: every operation of both dialects
gets generated requests (from the document's own parameters and bodies) with a valid key and real workspace, space,
data source and dataset ids, and fails on any 5xx, any response the document does not list, or any response body
that does not match the listed schema (issue 11, "What must exist" 4)."""

from __future__ import annotations

import os
import re
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
        fixed = {"wId": ws.sid, "spaceId": space.sid, "dsId": ds.sid, "dataset_id": made.json()["id"]}
        yield Api(schemathesis.openapi.from_asgi("/openapi.json", app), fixed, {"Authorization": f"Bearer {key}"})


# Inputs that still answer 500 because of the edge bugs of issue 11 "Found" 1 (search_method list, huge integers,
# deep nesting, lone surrogates), which another change fixes (item 1 of "What must exist": ranges, nesting and text
# validated at the edge). A server error on a case carrying one of them is excused (and printed), any other fails;
# drop this when that change is in.
SQLITE_INT = 2**63 - 1
MAX_DEPTH = 64


def known_edge_bug(case: Any) -> str | None:
    """Why ``case`` would hit one of the known edge bugs, or None."""
    parts = [case.path_parameters, case.query, case.body if not isinstance(case.body, bytes) else None]
    found: set[str] = set()

    def walk(value: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            found.add("deep nesting (item 1)")
        elif isinstance(value, bool):
            return
        elif (isinstance(value, int) and abs(value) > SQLITE_INT) or (isinstance(value, float) and abs(value) > 2**63):
            found.add("integer beyond SQLite's range (item 1)")
        elif isinstance(value, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
                found.add("lone surrogate (item 1)")
            elif re.fullmatch(r"-?[0-9]+(\.[0-9]*)?", value) and abs(float(value)) > SQLITE_INT:
                found.add("integer beyond SQLite's range (item 1)")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k, depth + 1)
                walk(v, depth + 1)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, depth + 1)

    for part in parts:
        walk(part, 0)
    model = case.body.get("retrieval_model") if isinstance(case.body, dict) else None
    if isinstance(model, dict) and "search_method" in model and not isinstance(model["search_method"], str | None):
        found.add("non-string search_method (item 1)")
    return ", ".join(sorted(found)) or None


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


def run_operation(api: Api, operation: Any, excused: list[str]) -> list[str]:
    """Runs ``operation`` on its generated cases; the failures found (empty if none). Server errors on inputs of
    the known edge bugs go to ``excused``."""
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
            if (reason := known_edge_bug(case)) is not None:
                excused.append(f"{operation.label}: {reason}: {type(exc).__name__}")
            else:
                failures.append(f"{operation.label}: 500: {type(exc).__name__}: {exc}"[:1500])

    run()
    return failures


def test_served_schema_tells_the_truth(api: Api) -> None:
    failures: list[str] = []
    excused: list[str] = []
    operations = [result.ok() for result in api.schema.get_all_operations()]
    assert len(operations) > 100
    for operation in operations:
        failures += run_operation(api, operation, excused)
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
    if excused:
        print(f"{len(excused)} server errors on inputs of known edge bugs (issue 11 item 1):", *excused, sep="\n  ")
