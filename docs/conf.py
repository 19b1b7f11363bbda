"""Sphinx configuration for the alloy-async documentation site (build: see README)."""

from __future__ import annotations

import alloy_async

project = "alloy-async"
author = "alloy-async developers"
copyright = "2026, alloy-async developers"  # noqa: A001 - Sphinx's own setting name
release = alloy_async.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx_click",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# Headings up to ### get anchors, so pages link into each other's sections and a broken anchor
# is a warning (the build runs with -W).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_title = f"alloy-async {release}"
