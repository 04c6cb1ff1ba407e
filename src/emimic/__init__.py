"""emimic: Emotional Mimicry Intensity estimation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emimic")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
