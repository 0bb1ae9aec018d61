"""Activation recomputation: peak memory and step time of the trainer's step with
`train.remat: none` and `layer`, each in a fresh process (so neither inherits the other's
allocations), on a synthetic dataset of the config's shapes.

Memory is TensorFlow's own allocator statistics (`tf.config.experimental.get_memory_info`,
the CPU's or the first GPU's): `resident` after the model and optimizer are built (weights and
optimizer slots), `peak` over the training steps (the final checkpoint's save left out); the
process's peak RSS (CPU, the save included) is printed beside.

    .venv/bin/python bench/remat.py                     # Base shapes, global batch 2
    .venv/bin/python bench/remat.py --config tiny --batch 8 --steps 20
"""

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

log = logging.getLogger("bench.remat")
MODES = ("none", "layer")


def _overrides(args, remat):
    total = args.warmup + args.steps
    # bi_data needs an even batch of rows over as many forward as reversed streams: one
    # forward stream per two rows is the smallest dataset the batch divides.
    return args.set + [f"train.global_batch_size={args.batch}", f"train.steps={total}",
                       f"train.log_every={total}", f"train.checkpoint_every={total}",
                       f"data.num_streams={max(args.batch // 2, 1)}", "data.num_passes=1",
                       f"train.remat={remat}"]


def measure(args, remat):
    """One run in this process -> {"seconds_per_step", "resident", "peak", "rss"} (bytes)."""
    import tensorflow as tf

    from pretrain.trainer import Trainer
    from xlnet import load_run_config

    sys.path.insert(0, os.path.join(REPO, "tests"))
    from dataset_fixture import write_dataset

    gpus = tf.config.list_physical_devices("GPU")
    device = "GPU:0" if gpus else "CPU:0"
    run_config = load_run_config(args.config, _overrides(args, remat))
    times = []
    with tempfile.TemporaryDirectory() as work:
        data_dir = os.path.join(work, "data")
        write_dataset(data_dir, run_config, segments_per_stream=args.warmup + args.steps + 1)
        trainer = Trainer(run_config, data_dir, os.path.join(work, "model"),
                          tf.distribute.get_strategy())
        resident = tf.config.experimental.get_memory_info(device)["current"]
        tf.config.experimental.reset_memory_stats(device)
        peaks = []

        def on_step(*_):
            times.append(time.perf_counter())
            peaks.append(tf.config.experimental.get_memory_info(device)["peak"])

        # The final checkpoint is written after the last on_step: its copies stay out of the
        # peak.
        trainer.train(on_step=on_step)
        peak = peaks[-1]
    timed = times[args.warmup:]
    return {"seconds_per_step": (timed[-1] - timed[0]) / (len(timed) - 1), "resident": resident,
            "peak": peak, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "device": device}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="base")
    parser.add_argument("--batch", type=int, default=2, help="global batch (rows)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (needs >= 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--only", choices=MODES, help=argparse.SUPPRESS)  # one child run
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.only:
        print(json.dumps(measure(args, args.only)))
        return
    results = {}
    for remat in MODES:
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", remat],
                               check=True, stdout=subprocess.PIPE, text=True)
        results[remat] = json.loads(child.stdout.strip().splitlines()[-1])
    mib = 2 ** 20
    log.info("config %s, global batch %d, %d timed steps after %d, CPU threads %d, %s",
             args.config, args.batch, args.steps, args.warmup, os.cpu_count(),
             results["none"]["device"])
    log.info("%-6s %10s %12s %12s %14s %12s", "remat", "s/step", "resident", "peak",
             "peak-resident", "peak RSS")
    for remat, r in results.items():
        log.info("%-6s %10.2f %8.0f MiB %8.0f MiB %10.0f MiB %8.0f MiB", remat,
                 r["seconds_per_step"], r["resident"] / mib, r["peak"] / mib,
                 (r["peak"] - r["resident"]) / mib, r["rss"] / mib)
    none, layer = results["none"], results["layer"]
    log.info("layer / none: step time %.2fx, peak %.2fx, peak above resident %.2fx",
             layer["seconds_per_step"] / none["seconds_per_step"], layer["peak"] / none["peak"],
             (layer["peak"] - layer["resident"]) / (none["peak"] - none["resident"]))


if __name__ == "__main__":
    main()
