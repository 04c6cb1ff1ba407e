"""Exceptions that the CLI turns into one clear sentence and a non-zero exit status."""


class EmimicError(Exception):
    """Base class of errors caused by the user's input rather than by a bug."""


class DataError(EmimicError):
    """A dataset file, column or value is missing, unreadable or invalid."""


class EmptyFeatures(DataError):
    """A per-clip file that holds zero frames (an extractor found no face, no speech): masked, not fatal."""


class ConfigError(EmimicError):
    """A configuration file or option is invalid."""


class ModelNotFoundError(EmimicError):
    """A pretrained model directory is missing; the message says how to provide it."""


class OutputPathError(EmimicError):
    """An output path the user gave cannot be written (missing or read-only folder, a folder where a file goes)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during resumable work; the message says what was kept and that the same command resumes."""
