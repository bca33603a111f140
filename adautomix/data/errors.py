"""The one error type of the data layer."""

from adautomix.errors import InputError


class DataError(InputError):
    """A dataset that cannot be read, prepared or loaded; the message names the file, class or
    dataset at fault and what to do about it."""
