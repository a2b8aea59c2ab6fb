"""Errors the user must fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad config, no or rejected API key, a required device missing at start."""


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
