"""The one error type of the data layer."""


class DataError(ValueError):
    """A dataset that cannot be read, prepared or loaded; the message names the file, class or
    dataset at fault and what to do about it."""
