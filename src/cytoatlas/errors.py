"""The one exception type users see: a one-line message saying what is wrong and what exists."""


class CytoatlasError(Exception):
    """Bad input or configuration; the message is meant to be read by a person, not parsed."""
