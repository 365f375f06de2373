"""User-facing errors: one clear sentence, caught by the CLI and printed without a traceback."""


class SamAdaptError(Exception):
    """A problem the user can fix (bad path, bad value, bad file). The message says what and how."""


class MissingFileError(SamAdaptError):
    """A required file or folder does not exist."""

    def __init__(self, path, what: str | None = None, how_to_get: str = ""):
        # what=None: `path` is a whole message (DataLoader workers re-raise an error as type(err)(text))
        super().__init__(str(path) if what is None else f"{what} not found: {path}. {how_to_get}")
        self.path = path


class UnsafeFileError(SamAdaptError):
    """A file tried to run code or load objects while being read (pickle globals, non-tensor checkpoint)."""
