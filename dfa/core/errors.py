"""The exception every user-facing failure in dfa raises, so the CLI can print it cleanly."""


class DfaError(Exception):
    """A failure with a message written for the user: what went wrong and what to do."""
