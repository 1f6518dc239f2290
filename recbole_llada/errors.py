"""Errors caused by the user's input (unknown model, missing data, bad flag): printed as one paragraph, no traceback."""


class UserInputError(ValueError):
    pass
