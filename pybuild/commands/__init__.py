"""One module per group of CLI commands, imported only when its command runs."""
