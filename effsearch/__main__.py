"""`python -m effsearch` runs the command line."""

from effsearch.cli import main

main()
