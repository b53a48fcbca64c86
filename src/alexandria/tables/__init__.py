"""Backend-neutral table logic: schema inference, row value validation, CSV parsing, their domain errors."""
