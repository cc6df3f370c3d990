"""Fashion-MNIST (Xiao et al., arXiv 1708.07747) from local IDX files, as a `datasets.DatasetDict`.

The Debian package `dataset-fashion-mnist` installs the four gzipped IDX files in `/usr/share/datasets/fashion-mnist/`;
any directory holding the same four files (gzipped or not, e.g. torchvision's `FashionMNIST/raw`) works too:

    >>> from fashion_mnist import load_fashion_mnist  # from scripts/, beside its users (the training script, the demo)
    >>> dataset = load_fashion_mnist()  # or load_fashion_mnist("/path/to/fashion-mnist"): 60,000 train, 10,000 test
    >>> dataset["train"].features["label"].int2str(dataset["train"][0]["label"])
    'Ankle boot'

Each image is stored as an uncompressed PGM (netpbm) file in the `datasets.Image` column: PIL decodes it like a PNG,
and a PGM file is a 13-byte header before the raw pixels, so the dataset is built in well under a second (PNGs: 5 s).
`read_split` needs numpy only (scripts/device_check.py uses it where `datasets` is not installed).
"""

import gzip
import hashlib
import os

import numpy as np

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# split -> (images file, labels file), as named by the original release
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str, expected_ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if `path` ends in `.gz`) into an array of `expected_ndim` dims."""
    try:
        with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError; a truncated gzip stream is an EOFError
        raise ValueError(f"{path} is corrupt: cannot read it ({error}); reinstall or re-download the file") from error
    magic = bytes([0, 0, 0x08, expected_ndim])  # two zero bytes, the element type (0x08: unsigned byte), the dims
    if raw[:4] != magic:
        raise ValueError(f"{path} is not an IDX file of {expected_ndim}-d unsigned bytes (magic 0x{raw[:4].hex()})")
    header_size = 4 + 4 * expected_ndim
    if len(raw) < header_size:
        raise ValueError(f"{path} is corrupt: {len(raw)} bytes is shorter than an IDX header ({header_size} bytes)")
    shape = tuple(int(dim) for dim in np.frombuffer(raw, dtype=">u4", count=expected_ndim, offset=4))
    if (payload := len(raw) - header_size) != np.prod(shape):
        raise ValueError(f"{path} is corrupt: its header gives shape {shape} but {payload} bytes follow")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def find_idx_file(data_dir: str, name: str) -> str:
    """Path of `name.gz` or `name` in `data_dir`; FileNotFoundError saying how to get the files otherwise."""
    for candidate in (os.path.join(data_dir, name + ".gz"), os.path.join(data_dir, name)):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {name}.gz not found in {data_dir}. On Debian/Ubuntu install it with "
        "`sudo apt-get install dataset-fashion-mnist` (files go to /usr/share/datasets/fashion-mnist), or pass the "
        "directory holding the four IDX files: load_fashion_mnist(data_dir=...) in Python, --fashion_mnist_dir "
        "with scripts/train_image_classification.py."
    )


def read_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, 28, 28) uint8, labels (N,) uint8, the two paths) of split "train" or "test", checked."""
    paths = [find_idx_file(data_dir, name) for name in FASHION_MNIST_FILES[split]]
    images, labels = read_idx(paths[0], expected_ndim=3), read_idx(paths[1], expected_ndim=1)
    if len(images) != len(labels):
        raise ValueError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} labels")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{paths[1]} is corrupt: label {labels.max()} is not one of the 10 classes")
    return images, labels, paths


def load_fashion_mnist(data_dir: str | os.PathLike | None = None):
    """Fashion-MNIST as a `DatasetDict`: the official "train" (60,000 images) and "test" (10,000) splits, each with an
    `image` (`datasets.Image`, 28x28 grayscale PIL) and a `label` (`ClassLabel` of the ten names) column. `data_dir`
    (default /usr/share/datasets/fashion-mnist) holds the four IDX files, gzipped (`.gz`) or not. Raises
    FileNotFoundError for a missing file (saying how to get it), ValueError for an invalid one or a count mismatch.
    """
    import pyarrow as pa
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    data_dir = os.fspath(data_dir) if data_dir is not None else DEFAULT_FASHION_MNIST_DIR
    features = Features({"image": Image(), "label": ClassLabel(names=FASHION_MNIST_CLASSES)})
    splits = {}
    for split in FASHION_MNIST_FILES:
        images, labels, paths = read_split(data_dir, split)
        count, height, width = images.shape
        header = np.frombuffer(f"P5 {width} {height} 255\n".encode("ascii"), dtype=np.uint8)
        files = np.concatenate([np.broadcast_to(header, (count, header.size)), images.reshape(count, -1)], axis=1)
        offsets = pa.py_buffer(np.arange(count + 1, dtype=np.int32) * files.shape[1])  # one PGM file per row
        file_bytes = pa.BinaryArray.from_buffers(pa.binary(), count, [None, offsets, pa.py_buffer(files)])
        image_column = pa.StructArray.from_arrays([file_bytes, pa.nulls(count, pa.string())], names=["bytes", "path"])
        table = pa.table({"image": image_column, "label": pa.array(labels.astype(np.int64))})
        # fingerprint from the files' identity, not datasets' default hash of the whole table (a third of the time)
        file_stats = [(path, os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in paths]
        fingerprint = hashlib.sha256(repr((split, file_stats)).encode()).hexdigest()[:16]
        splits[split] = Dataset(table.cast(features.arrow_schema), split=split, fingerprint=fingerprint)
    return DatasetDict(splits)
