"""Buildfile text to a typed AST: pure, no I/O beyond reading the text."""
