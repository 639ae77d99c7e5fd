"""Management commands of metering, and what they share."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def retries_logged(verbosity: int) -> Iterator[None]:
    """Below ``-v 2``, the usage sync's per-attempt warnings stay out of the command's output: the
    command says how the run ended in one line, and the run records its attempts and error."""
    sync_logger = logging.getLogger("metering.services.sync")
    previous = sync_logger.level
    if verbosity < 2:
        sync_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        sync_logger.setLevel(previous)
