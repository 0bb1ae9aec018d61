"""TensorBoard scalars and console step lines of the trainer (written by the chief only)."""

import datetime
import logging
import math
import os
import resource

import tensorflow as tf

from xlnet.formats.model_dir import (EVAL_LOG_DIR, EVAL_NO_MEMORY_LOG_DIR, LM_METRICS,
                                     TRAIN_LOG_DIR, data_scalar_tag, eval_scalar_tag, lm_tag,
                                     train_scalar_tag)
from xlnet.progress import Progress

logger = logging.getLogger(__name__)

# Dense peak TFLOP/s per device (original-xlnet.md §10.3; vendor sheets), by compute precision.
PEAK_TFLOPS = {
    # float32 runs as TF32 on Hopper; float16 and bfloat16 have the same dense peak.
    "H100": {"mixed_bfloat16": 989.4, "mixed_float16": 989.4, "float32": 494.7},
    "H200": {"mixed_bfloat16": 989.4, "mixed_float16": 989.4, "float32": 494.7},
    "A100": {"mixed_bfloat16": 312.0, "mixed_float16": 312.0, "float32": 156.0},
}
SCALARS = ("loss", "perplexity", "accuracy", "learning_rate", "grad_norm", "tokens_per_second",
           "mfu", "memory_bytes", "loss_scale", "skipped_steps")


def detect_peak_tflops(precision):
    """The peak of one local accelerator when known, else 0 (MFU not reported)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return 0.0
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
    match = next((peaks for model, peaks in PEAK_TFLOPS.items() if model in name), None)
    return match[precision] if match else 0.0


def memory_in_use():
    """Bytes of accelerator memory in use (first GPU), else the process's resident memory."""
    if tf.config.list_physical_devices("GPU"):
        return tf.config.experimental.get_memory_info("GPU:0")["current"]
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Reporter:
    """A TensorBoard run's writer, on the chief only (`enabled`)."""

    def __init__(self, log_dir, enabled):
        self.enabled = enabled
        self.writer = tf.summary.create_file_writer(log_dir) if enabled else None

    def write_text(self, tag, text, step):
        if self.enabled:
            with self.writer.as_default():
                tf.summary.text(tag, text, step=step)
            self.writer.flush()


class StepReporter(_Reporter):
    """Accumulates per-step metrics between logs; writes one console line and TB scalars, and
    on a terminal keeps a live progress bar under the lines (a context manager: the bar)."""

    def __init__(self, log_dir, total_steps, tokens_per_step, flops_per_token, peak_tflops,
                 enabled=True):
        super().__init__(log_dir, enabled)
        self.total_steps = total_steps
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.peak_tflops = peak_tflops
        self._progress = None
        self._reset(None)

    def _reset(self, now):
        self._since = now
        self._steps = 0
        self._applied = 0  # steps whose gradients were applied (mixed_float16 skips some)
        self._sums = {"loss": 0.0, "accuracy": 0.0, "grad_norm": 0.0}
        self._layer_grad_norms = 0.0  # becomes [N]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._progress:
            self._progress.finish()

    def start(self, now, step):
        self._reset(now)
        self._step = step
        if self.enabled:
            self._progress = Progress(logger, "pretrain", total=self.total_steps,
                                      log_every_s=None, start=step).__enter__()

    def exclude(self, seconds):
        """Leaves time spent outside the training steps (an evaluation) out of the rates."""
        self._since += seconds

    def add(self, metrics, layer_grad_norms):
        """One step's metrics (floats) and its gradient norm per layer [N]. The gradient
        norms of a skipped step (`metrics["skipped"]`: not finite under mixed_float16) are
        left out of the means."""
        self._steps += 1
        self._step += 1
        if self._progress:
            self._progress.update(self._step, f"loss {metrics['loss']:.4f}")
        skipped = metrics.get("skipped", 0.0) > 0
        for name in self._sums:
            if not (skipped and name == "grad_norm"):
                self._sums[name] += metrics[name]
        if not skipped:
            self._applied += 1
            self._layer_grad_norms = self._layer_grad_norms + layer_grad_norms

    def log(self, step, learning_rate, now, extra=None):
        """Means since the last log: console line and scalars; returns the scalars. `extra`:
        more scalars as they stand (mixed_float16: `loss_scale`, `skipped_steps` in all)."""
        elapsed = max(now - self._since, 1e-9)
        means = {name: value / self._steps for name, value in self._sums.items()}
        means["grad_norm"] = (self._sums["grad_norm"] / self._applied if self._applied
                              else math.nan)  # every step since the last log was skipped
        tokens_per_second = self._steps * self.tokens_per_step / elapsed
        scalars = {
            **means,
            "perplexity": math.exp(min(means["loss"], 700.0)),
            "learning_rate": learning_rate,
            "tokens_per_second": tokens_per_second,
            "memory_bytes": float(memory_in_use()),
            **{name: float(value) for name, value in (extra or {}).items()},
        }
        if self.peak_tflops > 0:
            scalars["mfu"] = tokens_per_second * self.flops_per_token / (self.peak_tflops * 1e12)
        eta = datetime.timedelta(
            seconds=round((self.total_steps - step) * elapsed / self._steps))
        if self.enabled:
            scaling = ""
            if "loss_scale" in scalars:
                scaling = (f" loss_scale {scalars['loss_scale']:.10g} skipped "
                           f"{scalars['skipped_steps']:.0f}")
            logger.info("step %d/%d loss %.7f lr %.3e grad_norm %.4f accuracy %.4f "
                        "tokens/s %.0f%s%s ETA %s", step, self.total_steps, means["loss"],
                        learning_rate, means["grad_norm"], means["accuracy"],
                        tokens_per_second,
                        f" mfu {scalars['mfu']:.2%}" if "mfu" in scalars else "", scaling, eta)
            with self.writer.as_default():
                for name, value in scalars.items():
                    if math.isnan(value):  # no gradient norm: every step skipped
                        continue
                    tag = lm_tag(name) if name in LM_METRICS else train_scalar_tag(name)
                    tf.summary.scalar(tag, value, step=step)
                for layer, norm in enumerate(self._layer_grad_norms / max(self._applied, 1)
                                             if self._applied else []):
                    tf.summary.scalar(train_scalar_tag(f"grad_norm/layer_{layer}"), norm,
                                      step=step)
            self.writer.flush()
        self._reset(now)
        return scalars


class EvalReporter(_Reporter):
    """Writes an evaluation's metrics: the with-memory numbers to the eval run, the same
    segments without memory to the eval_no_memory run, under the train run's `lm/` tags."""

    def __init__(self, log_dir, no_memory_log_dir, enabled=True):
        super().__init__(log_dir, enabled)
        if enabled:
            self.no_memory_writer = tf.summary.create_file_writer(no_memory_log_dir)

    def log(self, step, metrics):
        logger.info("eval at step %d: %d segments, %d targets: loss %.4f (no memory %.4f, "
                    "gain %.4f) perplexity %.2f (%.2f) accuracy %.4f (%.4f)", step,
                    metrics["segments"], metrics["targets"], metrics["loss"],
                    metrics["loss_no_memory"], metrics["memory_gain"], metrics["perplexity"],
                    metrics["perplexity_no_memory"], metrics["accuracy"],
                    metrics["accuracy_no_memory"])
        if not self.enabled:
            return
        with self.writer.as_default():
            for name in LM_METRICS:
                tf.summary.scalar(lm_tag(name), metrics[name], step=step)
            tf.summary.scalar(eval_scalar_tag("memory_gain"), metrics["memory_gain"], step=step)
            for layer, share in enumerate(metrics.get("memory_attention_share", [])):
                tf.summary.scalar(eval_scalar_tag(f"memory_attention_share/layer_{layer}"),
                                  share, step=step)
        with self.no_memory_writer.as_default():
            for name in LM_METRICS:
                tf.summary.scalar(lm_tag(name), metrics[f"{name}_no_memory"], step=step)
        self.writer.flush()
        self.no_memory_writer.flush()


def write_hparams(log_dir, run_config, trial_id):
    """The HParams dashboard's session of this run: every config value against the final
    train and eval metrics (read from the train, eval and eval_no_memory runs below
    `log_dir`, the model directory), so runs under one --logdir compare."""
    from tensorboard.plugins.hparams import api as hp

    values = {f"{section}.{key}": value for section, fields in run_config.to_dict().items()
              for key, value in fields.items()}
    metrics = [hp.Metric(lm_tag("loss"), group=TRAIN_LOG_DIR, display_name="train loss"),
               hp.Metric(lm_tag("loss"), group=EVAL_LOG_DIR, display_name="eval loss"),
               hp.Metric(lm_tag("loss"), group=EVAL_NO_MEMORY_LOG_DIR,
                         display_name="eval loss without memory"),
               hp.Metric(lm_tag("accuracy"), group=EVAL_LOG_DIR, display_name="eval accuracy"),
               hp.Metric(eval_scalar_tag("memory_gain"), group=EVAL_LOG_DIR,
                         display_name="memory gain (nats)")]
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        hp.hparams_config(hparams=[hp.HParam(name) for name in values], metrics=metrics)
        hp.hparams(values, trial_id=trial_id)
    writer.flush()


def _write_histogram(tag, edges_and_counts, step, description):
    """A histogram from counts already binned: [(left, right, count), ...]."""
    from tensorboard.plugins.histogram import metadata

    tf.summary.write(tag, tf.constant(edges_and_counts, tf.float64), step=step,
                     metadata=metadata.create_summary_metadata(tag, description))


def write_dataset_summaries(writer, stats, step=0):
    """What the run reads, from the dataset's stats.json: span-length and document-length
    histograms, the masked fraction and the A/B label balance of the first pass."""
    if not stats or not stats.get("passes"):
        return
    first = stats["passes"][0]
    with writer.as_default():
        spans = sorted((int(k), v) for k, v in first.get("span_lengths", {}).items())
        if spans:
            _write_histogram(data_scalar_tag("span_lengths"),
                             [(k - 0.5, k + 0.5, v) for k, v in spans], step,
                             "masked spans by length in tokens (or words), first pass")
        documents = sorted((int(k), v) for k, v in stats.get("document_tokens_log2", {}).items())
        if documents:
            _write_histogram(data_scalar_tag("document_tokens_log2"),
                             [(k, k + 1, v) for k, v in documents], step,
                             "documents by log2 of their length in tokens")
        tf.summary.scalar(data_scalar_tag("masked_fraction"), first["masked_fraction"], step)
        tf.summary.scalar(data_scalar_tag("label_true_b_fraction"),
                          first["label_true_b_fraction"], step)
    writer.flush()
