"""Shared test set-up: the tests folder is importable (for the slow reference solvers),
and the browser tests' dashboard server."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def server(tmp_path):
    """A real ``streamlit run`` of the dashboard on an empty workspace; its base URL."""
    from browser_app import streamlit_server

    with streamlit_server(tmp_path) as url:
        yield url
