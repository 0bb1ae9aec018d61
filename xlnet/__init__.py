"""XLNet: two-stream relative attention with recurrent memory (Keras 3, TensorFlow backend)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from xlnet.config import XLNetConfig  # noqa: E402
from xlnet.data_config import DataConfig  # noqa: E402
from xlnet.errors import UserError  # noqa: E402
from xlnet.run_config import RunConfig, load_run_config  # noqa: E402
from xlnet.train_config import TrainConfig  # noqa: E402

__all__ = ["XLNetConfig", "DataConfig", "TrainConfig", "RunConfig", "load_run_config",
           "UserError"]
