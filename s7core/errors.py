"""The one exception family a person can act on: its message says what is wrong and how to fix it."""


class UserError(Exception):
    """Bad input from a user (spec, data, run folder, command line); shown as a message, never a traceback."""
