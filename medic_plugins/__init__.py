"""Medic's built-in plugins.

Each module here is an ordinary plugin, registered through the ``medic`` entry-point group in
``pyproject.toml`` exactly as a third-party plugin would be.
"""
