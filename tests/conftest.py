import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from dataset_fixture import write_dataset  # noqa: E402
from xlnet import load_run_config  # noqa: E402


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """A tiny-config dataset directory (4 segments per stream), read-only, shared by the
    trainer tests; a test file may define its own `dataset` instead."""
    directory = str(tmp_path_factory.mktemp("data"))
    write_dataset(directory, load_run_config("tiny"), segments_per_stream=4)
    return directory
