"""``python -m ferdata`` runs the command line."""

from ferdata.cli import app

app()
