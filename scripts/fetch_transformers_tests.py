"""Fetch transformers' common test mixins (tests/test_*_common.py, test_pipeline_mixin.py) for the installed version.

The mixins ship only in transformers' source distribution on PyPI, so this downloads that sdist once (pip, PyPI only)
and extracts its top-level `tests/*.py` into `.cache/transformers_tests/hf_common/` as an importable package. The sdist
leaves out three helper modules the mixins import; they are replaced by the smallest stand-ins, each explained below.

Usage: python scripts/fetch_transformers_tests.py [--dest DIR]   (prints the folder holding `hf_common`)

The default folder is the one pyproject.toml's pytest `pythonpath` names, so the tests import `hf_common.*` as is.
"""

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

DEFAULT_DEST = Path(__file__).resolve().parent.parent / ".cache" / "transformers_tests"

# Stand-ins for modules that `tests/test_*_common.py` import but the sdist does not contain.
STAND_INS = {
    # ModelTesterMixin inherits ExportTesterMixin (dynamo/ONNX export tests living in tests/exporters/, absent from
    # the sdist). Export is tested by this project's own tests/test_export.py instead.
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    # Only used in issubclass checks that assert a model which cannot `generate` does not inherit it: true here.
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    # Common config kwargs, each set to a non-default value, that ConfigTester checks every config accepts.
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {\n"
        "    'return_dict': False,\n"
        "    'output_hidden_states': True,\n"
        "    'dtype': 'float16',\n"
        "    'chunk_size_feed_forward': 5,\n"
        "    'architectures': ['VisionBigBirdForImageClassification'],\n"
        "    'finetuning_task': 'image-classification',\n"
        "    'id2label': {0: 'label'},\n"
        "    'label2id': {'label': '0'},\n"
        "    'problem_type': 'regression',\n"
        "}\n"
    ),
}


def fetch(dest: Path = DEFAULT_DEST) -> Path:
    package_dir = dest / "hf_common"
    marker = package_dir / f".transformers-{transformers.__version__}"
    if marker.exists():
        return dest
    with tempfile.TemporaryDirectory() as download_dir:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"transformers=={transformers.__version__}",
                "-d",
                download_dir,
            ],
            check=True,
        )
        (archive,) = Path(download_dir).glob("transformers-*.tar.gz")
        package_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py"):
                    member.name = parts[2]
                    tar.extract(member, package_dir, filter="data")
    (package_dir / "__init__.py").write_text("")
    for relative_path, source in STAND_INS.items():
        path = package_dir / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").write_text("")
        path.write_text(source)
    marker.write_text("")
    return dest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    print(fetch(parser.parse_args().dest))
