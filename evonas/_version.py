"""The package version (a leaf module: ``evonas/__init__.py`` imports everything else)."""

__version__ = "0.1.0"
