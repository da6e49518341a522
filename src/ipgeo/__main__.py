"""``python -m ipgeo`` runs the command-line interface."""

from ipgeo.cli import main

main()
