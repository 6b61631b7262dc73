"""Exceptions shared by every layer of netsqueeze."""


class FormatError(ValueError):
    """A file is not what it claims to be: truncated, wrong magic, bad checksum, corrupt.

    Raised instead of a numpy/struct/zlib traceback so that callers get one clear message
    saying which file is wrong, what is wrong with it, and how to fix it.
    """
