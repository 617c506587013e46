"""The one exception type whose message is meant for the user.

Every bad input the core can detect is reported as a :class:`NapariGanError` with a
sentence that says what is wrong and what to do. The CLI prints it without a
traceback; the widgets show it as a napari notification.
"""


class NapariGanError(Exception):
    """A problem with the user's input, files or settings, explained in plain words."""
