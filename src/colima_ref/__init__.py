"""colima_ref: a reference service wired to Vault, SQL, document, cache and broker backends."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("colima-ref")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
