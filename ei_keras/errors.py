"""The one exception type users need to catch for bad input."""


class EiKerasError(ValueError):
    """Bad input or a bad file: the message says what was wrong and what to do."""
