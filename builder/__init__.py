"""Buildfile AST to images: stages, context, cache keys, steps through runner, commits through layerstore."""
