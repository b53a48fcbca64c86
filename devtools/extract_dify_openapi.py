"""Extracts, from Dify's own OpenAPI document of its Service API, the request bodies and query parameters of the
Knowledge routes Alexandria serves, into ``src/alexandria/api/dify/openapi_dify.json`` (read by
``alexandria.api.openapi`` when it describes the Dify routes).

Run it again when Dify's OpenAPI document changes::

    python devtools/extract_dify_openapi.py /work/shared/specs/dify-openapi-service.json

``$ref``s are inlined, prose (descriptions, examples, titles) is dropped, and OpenAPI 3.0's ``nullable`` is turned
into the 3.1 form FastAPI serves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "src/alexandria/api/dify/openapi_dify.json"
KEEP_OUT = {"description", "example", "examples", "title", "x-codeSamples", "externalDocs"}


def _inline(node: Any, components: dict[str, Any], depth: int = 0) -> Any:
    if depth > 40:
        raise ValueError("reference cycle")
    if isinstance(node, list):
        return [_inline(n, components, depth + 1) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _inline(components[name], components, depth + 1)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in KEEP_OUT:
            continue
        if key == "properties":  # property names are data, not keywords
            out[key] = {k: _inline(v, components, depth + 1) for k, v in value.items()}
        else:
            out[key] = _inline(value, components, depth + 1)
    if out.pop("nullable", False):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    components = spec.get("components", {}).get("schemas", {})
    out: dict[str, Any] = {}
    for path, item in sorted(spec["paths"].items()):
        if not (path.startswith("/datasets") or path.startswith("/workspaces/current/models")):
            continue
        for method, op in sorted(item.items()):
            if not isinstance(op, dict) or "responses" not in op:
                continue
            entry: dict[str, Any] = {}
            if "requestBody" in op:
                entry["requestBody"] = _inline(op["requestBody"], components)
            query = [_inline(p, components) for p in op.get("parameters", []) if p.get("in") == "query"]
            if query:
                entry["query"] = query
            out[f"{method.upper()} /v1{path}"] = entry
    return out


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    OUT.write_text(json.dumps(extract(spec), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
