"""The `alignez` command line (`alignez --help`)."""

from .main import main

__all__ = ["main"]
