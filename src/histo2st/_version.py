"""The installed version.

In a module of its own, so that any part of the package reads it without importing the package's ``__init__`` (and
everything that imports).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("histo2st")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"
