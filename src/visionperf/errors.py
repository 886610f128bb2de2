"""The one exception type that reaches the user as a single line, not a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the file (or flag) and the fix."""
