"""The installed distribution's version, in a leaf module so the HTTP edge can name it without
importing the package's public face (which names the composition root)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("colima-ref")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
