"""Development and test tools that are not part of the runtime package (``alexandria``): importable from the
repository root, as ``tests/`` and ``bench/`` do."""
