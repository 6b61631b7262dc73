"""netsqueeze: how many weights can we zero, and how few distinct values do they need?

Deep Compression (Han, Mao, Dally, ICLR 2016) as a library and a command-line tool:
magnitude pruning, k-means weight sharing, sparse index coding and Huffman coding,
with a real compressed file that decodes back into a working model.

The subpackages are layered; importing ``netsqueeze`` itself is cheap and pulls in
neither torch nor matplotlib.
"""

from netsqueeze.errors import DecodeBudgetError, FormatError

__version__ = "0.1.0"
__all__ = ["DecodeBudgetError", "FormatError", "__version__"]
