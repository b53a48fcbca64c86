"""Dify's Knowledge (dataset) Service API under ``/v1`` over the core (dify-behaviour.md)."""
