"""Exceptions shared by every layer of netsqueeze."""


class FormatError(ValueError):
    """A file is not what it claims to be: truncated, wrong magic, bad checksum, corrupt.

    Raised instead of a numpy/struct/zlib traceback so that callers get one clear message
    saying which file is wrong, what is wrong with it, and how to fix it.
    """


class DecodeBudgetError(FormatError, MemoryError):
    """Decoding a file would take more memory than its decode budget allows.

    The file may well be valid: it claims more than ``max_bytes`` (by default 256 MiB, or 256
    times the file size if larger) of decoded tensors plus the decoder's working memory. A
    ``FormatError`` (so every handler of bad files catches it) and a ``MemoryError`` (so it
    can be told apart from a malformed file); raise ``max_bytes`` if the file is trusted.
    """
