"""Errors caused by the user's input (unknown model, missing data, bad flag): printed as one paragraph, no traceback."""

import os

DEBUG_VARIABLE = "RECBOLE_LLADA_DEBUG"  # set to 1 to see the traceback of a user error


class UserInputError(ValueError):
    pass


def debug_from_environment() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
