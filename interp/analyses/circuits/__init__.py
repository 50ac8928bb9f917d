"""Circuits: attribution graphs over MLP neurons (build, prune, verify, read)."""
