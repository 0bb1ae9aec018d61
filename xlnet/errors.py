"""The one error type a user sees: a one-line message naming the thing and the fix."""


class UserError(ValueError):
    """Bad input from the user (path, config value, dataset, checkpoint).

    The command line prints `error: <message>` and exits with status 2, without a traceback
    unless `--debug` is given. Subclasses ValueError so library callers can catch it plainly.
    """
