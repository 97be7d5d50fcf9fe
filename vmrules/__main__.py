"""`python -m vmrules` runs the command line."""

from vmrules.cli import main

main()
