"""The one error type of the dataset layer."""

from __future__ import annotations

from ..errors import InputError


class DataError(InputError):
    """Bad input data. The message always names the file, the frame and the key.

    ``frame`` is the 0-based index of the frame in the file (``None`` where the problem is the
    file as a whole) and ``key`` the property or argument at fault.
    """

    def __init__(self, path, frame, key, message: str):
        self.path = str(path)
        self.frame = frame
        self.key = key
        self.reason = message
        where = "whole file" if frame is None else f"frame {frame}"
        super().__init__(f"{self.path}: {where}: key '{key}': {message}")
