"""Errors that a user can cause and fix.

Every mistake a user can make (a wrong path, an unknown game, a corrupt snapshot, a bad number)
is raised as a :class:`UserError`. The command line prints its message on one line and exits
with ``exit_code``; it never shows a traceback for one.
"""


class UserError(Exception):
    """A mistake in what the user asked for, with a message that says how to fix it."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

    def _render_traceback_(self) -> list:
        """IPython and Jupyter show a user's mistake as its one line, as the command line does,
        not a traceback through dqnviz (``%tb`` still shows it)."""
        return [f"UserError: {self}"]
