"""Hostile and unusual inputs (issue 21): decompression bombs, silent URLs, 16-bit, float and boolean images.

Each test fails on the code before the fix: a bomb decoded in full (here: a memory limit hit), a URL that waits
forever, a 16-bit image turned white, a float image turned black, a boolean mask turned black.
"""

import base64
import http.server
import multiprocessing
import resource
import socket
import struct
import threading
import zlib

import numpy as np
import PIL.Image
import pytest
import torch
from huggingface_hub.utils import httpx

from vision_bigbird_hf import image_decoding
from vision_bigbird_hf.image_decoding import scale_to_uint8, to_8bit
from vision_bigbird_hf.image_processing_pil_vision_bigbird import VisionBigBirdImageProcessorPil
from vision_bigbird_hf.image_processing_vision_bigbird import VisionBigBirdImageProcessor

PROCESSOR_CLASSES = [VisionBigBirdImageProcessor, VisionBigBirdImageProcessorPil]


@pytest.fixture(params=PROCESSOR_CLASSES, ids=["torchvision", "pil"])
def processor_class(request):
    return request.param


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_only_png(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height RGB pixels, then one tiny IDAT: well under 1 KB."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def serve(handler_class) -> tuple[http.server.HTTPServer, str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/image.png"


def bomb_handler(payload: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


# ---- Decompression bombs ------------------------------------------------------


def process_under_memory_limit(processor_class, source, queue):
    """Child process: allow 1 GiB more address space than already mapped, then process `source`."""
    with open("/proc/self/status") as status:
        mapped_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = mapped_kb * 1024 + 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        processor_class()(source, return_tensors="pt")
        queue.put("decoded")
    except Exception as error:  # noqa: BLE001  (MemoryError, RuntimeError from an allocation: the bomb was decoded)
        queue.put(f"{type(error).__name__}: {error}")


@pytest.mark.parametrize("as_source", ["path", "base64", "url"])
def test_header_only_bomb_is_refused_before_decoding(processor_class, tmp_path, as_source):
    """A <1 KB PNG declaring 100000x100000 pixels (30 GB decoded), under a 1 GiB memory allowance: the processor must
    refuse it from its header. Before the fix, the torchvision backend tried to allocate the whole image."""
    payload = header_only_png(100_000, 100_000)
    assert len(payload) < 1024
    server = None
    if as_source == "path":
        (tmp_path / "bomb.png").write_bytes(payload)
        source = str(tmp_path / "bomb.png")
    elif as_source == "base64":
        source = base64.b64encode(payload).decode()
    else:
        server, source = serve(bomb_handler(payload))
    try:
        context = multiprocessing.get_context("fork")  # torch is already imported: no second start-up
        queue = context.Queue()
        child = context.Process(target=process_under_memory_limit, args=(processor_class, source, queue))
        child.start()
        outcome = queue.get(timeout=120)
        child.join(timeout=30)
    finally:
        if server is not None:
            server.shutdown()
    assert outcome.startswith("ValueError"), outcome
    assert "10000000000 pixels" in outcome and "MAX_IMAGE_PIXELS" in outcome, outcome


def test_size_over_the_limit_names_width_and_height(processor_class, tmp_path, monkeypatch):
    """Below PIL's own hard refusal (twice the limit) PIL only warns; the processors refuse and name the size."""
    path = tmp_path / "big.png"
    PIL.Image.new("RGB", (30, 20), (10, 20, 30)).save(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(ValueError, match=r"30x20 = 600 pixels, more than PIL.Image.MAX_IMAGE_PIXELS = 500"):
        processor_class()(str(path), return_tensors="pt")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", None)  # the documented way to allow large images
    assert processor_class()(str(path), return_tensors="pt").pixel_values.shape == (1, 3, 224, 224)


def test_url_that_never_answers_times_out(processor_class, monkeypatch):
    """A server that accepts the connection and never answers: the load must end with a timeout error."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/image.png"
    monkeypatch.setattr(image_decoding, "URL_TIMEOUT", 0.5)
    outcome = []

    def load():
        try:
            processor_class()(url, return_tensors="pt")
            outcome.append("loaded")
        except httpx.TimeoutException as error:
            outcome.append(error)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=60)  # not a budget: only a bound on how long a hang is waited for
    listener.close()
    assert outcome and isinstance(outcome[0], httpx.TimeoutException), "the URL load did not time out"


# ---- Faithful 8-bit images ----------------------------------------------------


def gradient_16bit() -> np.ndarray:
    return (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 ... 65520


def processed(processor_class, image) -> np.ndarray:
    """The processor's output in [0, 1], no crop or resize: (3, H, W)."""
    result = processor_class()(
        image, do_normalize=False, do_resize=False, do_center_crop=False, return_tensors="pt"
    ).pixel_values[0]
    return result.numpy()


@pytest.mark.parametrize("as_input", ["path", "pil", "array", "tensor"])
def test_16bit_grayscale_is_scaled_by_its_range(processor_class, tmp_path, as_input):
    """Before the fix a 16-bit PNG became all white (PIL clips to 255) or 257 times too bright (arrays)."""
    values = gradient_16bit()
    path = tmp_path / "gray16.png"
    PIL.Image.fromarray(values).save(path)
    image = {
        "path": str(path),
        "pil": PIL.Image.open(path),
        "array": values[..., None],  # (H, W, 1): the backends take arrays with a channel axis
        "tensor": torch.from_numpy(values.astype(np.int32))[None],  # (1, H, W)
    }[as_input]
    expected = np.round(values / 257) / 255  # independent: 16-bit levels to 8-bit levels, then rescale
    np.testing.assert_allclose(processed(processor_class, image), np.broadcast_to(expected, (3, 64, 64)), atol=1e-6)


def test_float_pil_image_in_unit_range_is_not_black(processor_class):
    image = PIL.Image.fromarray(np.full((32, 32), 0.5, dtype=np.float32))  # mode F
    np.testing.assert_allclose(processed(processor_class, image), 128 / 255, atol=1e-6)


@pytest.mark.parametrize("as_input", ["array", "tensor", "bfloat16"])
def test_already_rescaled_float_image_warns(processor_class, caplog, as_input):
    from transformers.utils import logging

    if as_input == "bfloat16" and processor_class is VisionBigBirdImageProcessorPil:
        pytest.skip("transformers' PilBackend cannot take bfloat16 tensors (NumPy has no bfloat16)")
    logging.get_logger("vision_bigbird_hf.image_decoding").warning_once.cache_clear()
    array = np.full((32, 32, 3), 0.5, dtype=np.float32)
    image = {"array": array, "tensor": torch.from_numpy(array), "bfloat16": torch.from_numpy(array).bfloat16()}
    image = image[as_input]
    logging.enable_propagation()
    try:
        processor_class()(image, return_tensors="pt")
    finally:
        logging.disable_propagation()
    assert "already rescaled" in caplog.text
    assert "do_rescale=False" in caplog.text


@pytest.mark.parametrize("as_input", ["array", "tensor"])
def test_boolean_mask_is_refused(processor_class, as_input):
    mask = np.zeros((32, 32, 1), dtype=bool)
    mask[8:24, 8:24] = True
    image = mask if as_input == "array" else torch.from_numpy(mask)
    with pytest.raises(ValueError, match=r"boolean array of shape \(32, 32, 1\): a mask is not an image"):
        processor_class()(image, return_tensors="pt")


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([0, 257, 65535], dtype=np.uint16), [0, 1, 255]),
        (np.array([0, 128, 255], dtype=np.int32), [0, 128, 255]),  # 8-bit values in a wide integer type
        (np.array([0, 32896, 65535], dtype=np.int32), [0, 128, 255]),  # a PIL "I" image of a 16-bit file
        (np.array([0.0, 0.5, 1.0], dtype=np.float32), [0, 128, 255]),
        (np.array([0.0, 100.0, 255.0], dtype=np.float32), [0, 100, 255]),
        (np.array([-1.0, 0.0, 1.0], dtype=np.float32), [0, 128, 255]),  # min-max range
    ],
)
def test_scale_to_uint8(values, expected):
    assert scale_to_uint8(values).tolist() == expected


def test_8bit_images_pass_unchanged():
    array = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert to_8bit(array) is array
    image = PIL.Image.fromarray(array)
    assert to_8bit(image) is image
    floats = array.astype(np.float32)
    assert to_8bit(floats) is floats


# ---- scripts/export_for_hub.py --------------------------------------------------


def test_export_names_a_missing_run_folder(tmp_path, monkeypatch):
    """Before the fix transformers took the missing folder for a Hub id ("Repo id must be in the form ...")."""
    import export_for_hub  # scripts/ is on pytest's pythonpath

    missing = tmp_path / "runs" / "no-such-run"
    arguments = ["export_for_hub.py", "--run_dir", str(missing), "--output_dir", str(tmp_path / "hub")]
    monkeypatch.setattr("sys.argv", arguments)
    with pytest.raises(FileNotFoundError, match=f"--run_dir {missing}: no such folder"):
        export_for_hub.main()
    assert not (tmp_path / "hub").exists()
