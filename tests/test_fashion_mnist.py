"""Tests of the Fashion-MNIST loader, `scripts/fashion_mnist.py` (importable through the `pythonpath` of
pyproject.toml's pytest section)."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from fashion_mnist import DEFAULT_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx

has_fashion_mnist = os.path.isfile(os.path.join(DEFAULT_FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz"))
requires_fashion_mnist = pytest.mark.skipif(
    not has_fashion_mnist,
    reason=f"Fashion-MNIST not in {DEFAULT_FASHION_MNIST_DIR}: `sudo apt-get install dataset-fashion-mnist`",
)


def write_idx(path: Path, array: np.ndarray, magic: bytes | None = None):
    """Write `array` (uint8) as a gzipped IDX file, with its correct magic number unless `magic` is given."""
    magic = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    header = magic + b"".join(int(dim).to_bytes(4, "big") for dim in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def write_fake_fashion_mnist(directory: Path, num_train: int = 5, num_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, size=(num_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=num_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(num_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, size=num_test),
    }
    for name, array in arrays.items():
        write_idx(directory / f"{name}.gz", array)
    return arrays


def test_loader_returns_the_pixels_and_labels_of_the_idx_files(tmp_path):
    arrays = write_fake_fashion_mnist(tmp_path)
    dataset = load_fashion_mnist(tmp_path)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = np.stack([np.array(image) for image in dataset[split]["image"]])
        np.testing.assert_array_equal(images, arrays[f"{prefix}-images-idx3-ubyte"])
        np.testing.assert_array_equal(dataset[split]["label"], arrays[f"{prefix}-labels-idx1-ubyte"])


def test_loader_reads_uncompressed_idx_files_too(tmp_path):
    arrays = write_fake_fashion_mnist(tmp_path)
    for gz_path in tmp_path.glob("*.gz"):
        gz_path.with_suffix("").write_bytes(gzip.decompress(gz_path.read_bytes()))
        gz_path.unlink()
    dataset = load_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(np.array(dataset["test"][2]["image"]), arrays["t10k-images-idx3-ubyte"][2])


def test_loader_explains_how_to_get_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sudo apt-get install dataset-fashion-mnist.*data_dir="):
        load_fashion_mnist(tmp_path)


def test_read_idx_reads_the_header_and_the_pixels(tmp_path):
    """Any shape, not only 28x28: scripts/device_check.py reads the carried files through this reader too."""
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "images-idx3-ubyte.gz", images)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "images-idx3-ubyte.gz"), expected_ndim=3), images)


def test_read_idx_rejects_corrupt_files(tmp_path):
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "bad-magic.gz", images, magic=bytes([0, 0, 0x0D, 3]))  # 0x0D: float, not ubyte
    with pytest.raises(ValueError, match="bad-magic.gz is not an IDX file"):
        read_idx(str(tmp_path / "bad-magic.gz"), expected_ndim=3)

    write_idx(tmp_path / "truncated.gz", images)
    raw = gzip.decompress((tmp_path / "truncated.gz").read_bytes())
    (tmp_path / "truncated.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match="truncated.gz is corrupt"):
        read_idx(str(tmp_path / "truncated.gz"), expected_ndim=3)

    (tmp_path / "not-gzip.gz").write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match="not-gzip.gz is corrupt"):
        read_idx(str(tmp_path / "not-gzip.gz"), expected_ndim=3)


@requires_fashion_mnist
def test_real_fashion_mnist():
    dataset = load_fashion_mnist()
    assert {split: dataset[split].num_rows for split in dataset} == {"train": 60000, "test": 10000}
    assert dataset["train"].features["label"].names == FASHION_MNIST_CLASSES
    image = dataset["test"][0]["image"]
    assert (image.size, image.mode) == ((28, 28), "L")
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class
    labels = dataset.with_format("numpy")
    assert np.bincount(labels["train"]["label"]).tolist() == [6000] * 10
    assert np.bincount(labels["test"]["label"]).tolist() == [1000] * 10
