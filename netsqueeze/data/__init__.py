"""Data sets as numpy arrays: MNIST, Fashion-MNIST, IDX folders and an offline sample.

>>> from netsqueeze.data import load
>>> ds = load("mnist-sample")
>>> ds.x_train.shape, ds.x_train.dtype, ds.y_train.dtype
((4000, 28, 28), dtype('uint8'), dtype('int64'))

Images are uint8 (n, 28, 28) arrays of grey levels 0..255, labels int64 (n,). This package
never imports torch; the training code converts the arrays. See :mod:`netsqueeze.data.datasets`
for where data sets are looked for and the environment variables that steer it.
"""

from netsqueeze.data.datasets import (
    DATASET_NAMES,
    FASHION_MNIST,
    IMAGE_SHAPE,
    MNIST,
    SPLIT_FILES,
    Dataset,
    DatasetSpec,
    cache_dir,
    download,
    load,
    load_folder,
    locate,
    search_dirs,
)
from netsqueeze.data.download import DownloadError
from netsqueeze.data.idx import read_idx, write_idx
from netsqueeze.errors import FormatError

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST",
    "IMAGE_SHAPE",
    "MNIST",
    "SPLIT_FILES",
    "Dataset",
    "DatasetSpec",
    "DownloadError",
    "FormatError",
    "cache_dir",
    "download",
    "load",
    "load_folder",
    "locate",
    "read_idx",
    "search_dirs",
    "write_idx",
]
