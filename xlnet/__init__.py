"""XLNet: two-stream relative attention with recurrent memory (Keras 3, TensorFlow backend).

The configs and the error type import at once; the model and keras-xlnet's names are imported
on first use, so `import xlnet` stays free of TensorFlow.
"""

import importlib.metadata
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from xlnet.config.data_config import DataConfig  # noqa: E402
from xlnet.config.model_config import XLNetConfig  # noqa: E402
from xlnet.config.run_config import RunConfig, load_run_config  # noqa: E402
from xlnet.config.train_config import TrainConfig  # noqa: E402
from xlnet.errors import UserError  # noqa: E402

DISTRIBUTION = "xlnet-pipeline"  # pyproject.toml's name; its version is the one version string

KERAS_XLNET_NAMES = ("Tokenizer", "build_xlnet", "load_trained_model_from_checkpoint",
                     "ATTENTION_TYPE_UNI", "ATTENTION_TYPE_BI")

__all__ = ["XLNetLM", "XLNetConfig", "DataConfig", "TrainConfig", "RunConfig", "load_run_config",
           "UserError", *KERAS_XLNET_NAMES]


def __getattr__(name):
    if name == "__version__":
        try:
            return importlib.metadata.version(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
            return "unknown (not installed)"
    if name == "XLNetLM":
        from xlnet.model.xlnet_lm import XLNetLM

        return XLNetLM
    if name in KERAS_XLNET_NAMES:
        from xlnet import keras_compat

        return getattr(keras_compat, name)
    raise AttributeError(f"module 'xlnet' has no attribute {name!r}")
