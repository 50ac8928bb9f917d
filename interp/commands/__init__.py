"""CLI commands of the analyses, one module each; they register on ``interp.cli.app``."""
