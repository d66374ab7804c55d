"""CIFAR-10 on disk and in memory: finding, reading, downloading, test sets, batched augmentation.

The whole data set is held as four tensors (uint8 images, int64 labels), read once;
augmentation works on a batch of uint8 images on whatever device they live on.

- `find`: which folder s7 looks in (`resolve_data_dir`) and what it holds there (`find_cifar10`)
- `formats`: the two on-disk layouts ("bin", "py") behind one `CifarFormat` interface
- `unpickle`: the restricted unpickler for the python layout
- `archive`: safe extraction of a .tar.gz
- `download`: fetching the official archive (`download_cifar10`)
- `load`: `load_cifar10` -> `CifarData`
- `augment`: `normalize`, `denormalize`, `augment_batch`, `scale_to`
- `synthetic`: `synthetic_cifar10`, a learnable stand-in made in memory
- `testsets`: `write_cifar10`, `make_tiny_cifar10`, small data sets on disk for tests and demos

`python -m s7core data [--data-dir DIR] [--download]` says where the data is, or fetches it.
"""

from s7core.config import AugmentConfig, AugmentError
from s7core.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    augment_batch,
    denormalize,
    normalize,
    scale_to,
)
from s7core.data.download import CIFAR10_ARCHIVE_BYTES, CIFAR10_MD5, CIFAR10_URL, Progress, download_cifar10
from s7core.data.errors import DATA_ENV, DOWNLOAD_COMMAND, DataError
from s7core.data.find import DataStatus, count_train_images, default_data_dir, find_cifar10, resolve_data_dir
from s7core.data.formats import BIN, CIFAR10_CLASSES, FORMATS, IMAGE_SHAPE, PY, CifarFormat
from s7core.data.load import CifarData, load_cifar10
from s7core.data.synthetic import synthetic_cifar10
from s7core.data.testsets import make_tiny_cifar10, write_cifar10

__all__ = [
    "BIN",
    "CIFAR10_ARCHIVE_BYTES",
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_URL",
    "DATA_ENV",
    "DOWNLOAD_COMMAND",
    "FORMATS",
    "IMAGE_SHAPE",
    "PY",
    "AugmentConfig",
    "AugmentError",
    "CifarData",
    "CifarFormat",
    "DataError",
    "DataStatus",
    "Progress",
    "augment_batch",
    "count_train_images",
    "default_data_dir",
    "denormalize",
    "download_cifar10",
    "find_cifar10",
    "load_cifar10",
    "make_tiny_cifar10",
    "normalize",
    "resolve_data_dir",
    "scale_to",
    "synthetic_cifar10",
    "write_cifar10",
]
