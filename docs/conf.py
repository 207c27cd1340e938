"""Sphinx configuration: ``python -m sphinx -W -b html docs docs/_build/html``.

Everything builds offline: no intersphinx inventories are fetched.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import sklearn_gmnm

project = "sklearn_gmnm"
author = "sklearn_gmnm developers"
copyright = "2026, sklearn_gmnm developers"
release = sklearn_gmnm.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples", "auto_examples/*.ipynb", "auto_examples/*.py"]
templates_path = ["_templates"]
autosummary_generate = True
# scikit-learn's generated metadata-routing setters and get/set_params are documented
# by scikit-learn; their docstrings link into its own site.
autodoc_default_options = {
    "members": True,
    "inherited-members": False,
    "exclude-members": "set_fit_request, set_partial_fit_request, set_score_request, "
    "get_metadata_routing, get_params, set_params",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
html_theme = "pydata_sphinx_theme"
html_title = "sklearn_gmnm"
html_theme_options = {"navigation_with_keys": False}
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
}
