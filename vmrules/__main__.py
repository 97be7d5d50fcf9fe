"""`python -m vmrules` runs the command line."""

import sys

import vmrules

if getattr(vmrules, "__file__", None) is None:     # a folder vmrules/ here hides an editable install's package
    sys.exit("python -m vmrules: the folder vmrules/ in this directory hides the vmrules package of an editable "
             "install (python -m looks here first); run the vmrules command, or python -m vmrules elsewhere")

from vmrules.cli import run  # noqa: E402

run()
