"""Trainer throughput: the input pipeline alone, whole training steps, and evaluation, on one
config.

The input pipeline must outrun the model by a wide margin (it parses records and derives the
[L, L] permutation masks on the host); end-to-end tokens/s is what `xlnet pretrain` logs.
Evaluation scores each segment twice (with and without memory), forward only, so it should run
at about the training step's token rate or faster.
Without --data a synthetic dataset (tests/dataset_fixture.py, the directory contract with real
TFRecords) is written to a temporary directory.

    .venv/bin/python bench/train_step.py --config tiny --steps 60
    .venv/bin/python bench/train_step.py --config base --data DIR --steps 20 \
        --set train.global_batch_size=2
"""

import argparse
import logging
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402

from pretrain.evaluator import Evaluator  # noqa: E402
from pretrain.input_pipeline import InputPipeline, StreamPlan, load_dataset_info  # noqa: E402
from pretrain.trainer import Trainer  # noqa: E402
from xlnet import load_run_config  # noqa: E402

log = logging.getLogger("bench.train_step")


def synthetic_dataset(run_config, directory, segments_per_stream):
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from dataset_fixture import write_dataset

    write_dataset(directory, run_config, segments_per_stream=segments_per_stream,
                  eval_segments_per_stream=segments_per_stream)
    return directory


def pipeline_steps_per_second(run_config, data_dir, steps):
    train = run_config.train
    plan = StreamPlan(load_dataset_info(data_dir, run_config), data_dir,
                      train.global_batch_size, 1, train.seed)
    pipeline = InputPipeline(plan, run_config.data, train.seed, train.grad_accum_steps,
                             train.resample_perm)
    iterator = iter(pipeline.worker_dataset(0, 1, 0, steps + 5))
    for _ in range(5):  # warm-up: open files, fill the prefetch buffer
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    return steps / (time.perf_counter() - start)


def train_steps_per_second(run_config, data_dir, model_dir, warmup):
    """(steps/s, the trained model)."""
    times = []
    trainer = Trainer(run_config, data_dir, model_dir, tf.distribute.get_strategy())
    trainer.train(on_step=lambda *_: times.append(time.perf_counter()))
    timed = times[warmup:]
    return (len(timed) - 1) / (timed[-1] - timed[0]), trainer.model


def eval_segments_per_second(run_config, data_dir, model, segments_per_row):
    """Segments scored per second (each with and without memory); the eval split, else the
    train split; the first evaluation (tracing) is not timed."""
    info = load_dataset_info(data_dir, run_config)
    split = "eval" if info.eval_passes else "train"
    evaluator = Evaluator(tf.distribute.get_strategy(), model, info, data_dir, run_config,
                          split, segments_per_row)
    evaluator.evaluate()
    start = time.perf_counter()
    evaluator.evaluate()
    return evaluator.segments / (time.perf_counter() - start), split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--data", help="dataset directory (default: synthetic)")
    parser.add_argument("--steps", type=int, default=60, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    parser.add_argument("--eval-segments", type=int, default=16,
                        help="segments per row of each timed evaluation")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    total = args.warmup + args.steps
    run_config = load_run_config(args.config, args.set + [
        f"train.steps={total}", f"train.log_every={total}", f"train.checkpoint_every={total}"])
    train, data = run_config.train, run_config.data
    with tempfile.TemporaryDirectory() as work:
        data_dir = args.data or synthetic_dataset(run_config, os.path.join(work, "data"),
                                                  segments_per_stream=16)
        pipeline_rate = pipeline_steps_per_second(run_config, data_dir, 10 * total)
        train_rate, model = train_steps_per_second(run_config, data_dir,
                                                   os.path.join(work, "model"), args.warmup)
        eval_rate, split = eval_segments_per_second(run_config, data_dir, model,
                                                    args.eval_segments)
    tokens_per_step = train.global_batch_size * train.grad_accum_steps * data.seq_len
    log.info("config %s, global batch %d, seq_len %d, %s, jit_compile=%s, CPU threads %d",
             args.config, train.global_batch_size, data.seq_len, train.precision,
             train.jit_compile, os.cpu_count())
    log.info("input pipeline only: %.1f steps/s = %.0f tokens/s", pipeline_rate,
             pipeline_rate * tokens_per_step)
    log.info("end to end:          %.1f steps/s = %.0f tokens/s", train_rate,
             train_rate * tokens_per_step)
    log.info("pipeline / training: %.1fx", pipeline_rate / train_rate)
    log.info("evaluation (%s split, with and without memory): %.1f segments/s = %.0f "
             "tokens/s, %.2fx the training step's tokens/s", split, eval_rate,
             eval_rate * data.seq_len, eval_rate * data.seq_len / (train_rate * tokens_per_step))


if __name__ == "__main__":
    main()
