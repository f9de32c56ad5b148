"""The project's own exception: expected failures a person can act on."""


class InstrumentIdError(Exception):
    """An expected failure (bad file, wrong shape, missing model); the message names what and why."""
