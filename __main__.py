"""``python -m headveil`` runs the CLI."""

from headveil.pipelines.cli import main

main()
