"""Which door owns a path: the one place that decides whose error envelope a request gets.

- OpenAI's Files and Vector Stores API: ``/v1/files``, ``/v1/vector_stores`` and below (but not Dify's signed
  download ``/v1/files/{id}/file-download``);
- Dify's Knowledge API: every other path under ``/v1/``;
- Dust's Data Sources API: everything else (``/api/v1/...``).
"""

from __future__ import annotations

from typing import Literal

Door = Literal["dust", "dify", "openai"]

OPENAI_ROOTS = ("/v1/files", "/v1/vector_stores")
DIFY_PREFIX = "/v1/"
DIFY_SIGNED_DOWNLOAD = "/file-download"


def door_of(path: str) -> Door:
    for root in OPENAI_ROOTS:
        if (path == root or path.startswith(root + "/")) and not path.endswith(DIFY_SIGNED_DOWNLOAD):
            return "openai"
    return "dify" if path.startswith(DIFY_PREFIX) else "dust"
