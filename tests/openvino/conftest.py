"""Fixtures for the OpenVINO provider's unit tests (the provider alone, no session).

This folder has no ``__init__.py`` on purpose: as a package it would be named ``openvino`` and,
with ``tests/`` on sys.path, shadow the real openvino package for every ``import openvino``.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def make_provider():
    """OpenVINOExecutionProvider(options), skipping when OpenVINO is not available here."""
    from ortlite.providers.openvino import OpenVINOExecutionProvider

    ok, why = OpenVINOExecutionProvider.availability()
    if not ok:
        pytest.skip(f"OpenVINOExecutionProvider unavailable: {why}")

    def make(**options):
        return OpenVINOExecutionProvider(options)

    return make


@pytest.fixture
def prov(make_provider):
    """The provider with its default options (CPU, FP32)."""
    return make_provider()
