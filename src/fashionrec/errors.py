"""Errors a user can fix: the CLI prints them as one line, with no traceback."""


class UserError(Exception):
    """A bad path, malformed file, or wrong flag. The message is shown to the user as is."""
