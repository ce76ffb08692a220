"""Exceptions that carry a message meant for the person running the job."""


class RayragError(Exception):
    """Base class: anything raised on purpose by rayrag, with an actionable message."""


class ConfigError(RayragError, ValueError):
    """A config file, override or argument is wrong."""


class DataError(RayragError, ValueError):
    """A dataset file is missing or malformed; the message names the file and line."""


class ModelNotFoundError(RayragError, LookupError):
    """A model name resolves to nothing that can be loaded here."""


class UntrainedReranker(DataError):
    """A reranker checkpoint lacks the weights that score pairs: they would be initialised at load
    time. Here, not beside the loader, so that Serve's ingress can catch it without importing torch."""
