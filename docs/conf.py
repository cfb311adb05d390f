"""Sphinx configuration of the fastperm documentation.

Build from the repository root:

    pip install -r docs/requirements.txt
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery (docs/examples/plot_*.py) is executed at build time by sphinx-gallery;
its figures come from the installed (or editable) fastperm on the default backend.
"""

import os
from pathlib import Path

import fastperm

DOCS = Path(__file__).resolve().parent

# -- project -------------------------------------------------------------------------------
project = "fastperm"
author = "fastperm developers"
copyright = "fastperm developers"
release = fastperm.__version__
version = ".".join(release.split(".")[:2])

# -- extensions ------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",  # NumPy-style docstrings
    "sphinx.ext.mathjax",  # .. math:: and :math: in the guide pages
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext"}
# examples/: the gallery's sources (sphinx-gallery renders them into auto_examples/);
# generated/: files written by setup() below, pulled in with .. include::
exclude_patterns = ["_build", "examples", "generated"]
templates_path = []

# Cross-references are checked: every :func:, :mod:, :class: ... target must resolve.
nitpicky = True
default_role = "code"  # `x` in a docstring is literal text, not a failed reference

# -- autodoc ---------------------------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "none"  # the NumPy "Parameters" sections carry the types
autosummary_generate = False  # the API pages are written by hand, nothing generated

# -- numpydoc (NumPy docstrings) ---------------------------------------------------------------
numpydoc_show_class_members = False  # autodoc's :members: lists them; no autosummary stubs
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False  # types such as "(n, d) array" are prose, not targets
numpydoc_attributes_as_param_list = True
numpydoc_validation_checks = set()

# -- maths -----------------------------------------------------------------------------------
# MathJax renders in the reader's browser; the build itself needs no LaTeX.

# -- sphinx-gallery --------------------------------------------------------------------------
os.environ.setdefault("MPLBACKEND", "Agg")
sphinx_gallery_conf = {
    "examples_dirs": str(DOCS / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    "filename_pattern": r"/plot_",  # run every plot_*.py
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    "abort_on_example_error": True,
}

# -- html ------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"fastperm {release}"
html_static_path = []
html_theme_options = {
    "description": "Compiled kernels for symmetry and example order in training",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}

# -- generated pages -------------------------------------------------------------------------
# The kernel families of the contract, one table each, written from
# fastperm.backends.contract.FAMILIES at every build (docs/generated/ is git-ignored and
# included by api/contract.rst), so that the page cannot drift from the code.


def _families_rst() -> str:
    from fastperm.backends import contract

    out = []
    for fam in contract.FAMILIES.values():
        title = f"``{fam.name}``"
        out += [
            title,
            "~" * len(title),
            "",
            f"Module ``{fam.module}`` in every backend. {fam.summary}",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 18 12 70",
            "",
            "   * - argument",
            "     - role",
            "     - meaning",
        ]
        for arg in fam.args:
            out += [f"   * - ``{arg.name}``", f"     - {arg.role}", f"     - {arg.doc}"]
        out += ["", f"Returns: {fam.returns}", ""]
    return "\n".join(out) + "\n"


def _write_generated(app):
    target = DOCS / "generated" / "families.rst"
    text = _families_rst()
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.parent.mkdir(exist_ok=True)
        target.write_text(text, encoding="utf-8")


def setup(app):
    app.connect("builder-inited", _write_generated)
