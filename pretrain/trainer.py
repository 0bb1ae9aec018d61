"""The training loop: tf.distribute step with per-replica memory, checkpoints, summaries.

One optimizer step on each replica: for each of the `grad_accum_steps` micro-batches, the
forward and backward pass (optionally XLA-compiled) with the memory its rows carried from the
previous micro-step; then the gradients are summed across replicas, divided by the global
number of targets (so the loss is the masked mean over the whole global batch, whatever the
replica count), clipped by global norm, and applied. Under mixed_float16 the loss is scaled
before the gradient and the summed gradients unscaled before the norm; a step whose gradients
are not finite on any replica is skipped by all (the weights and the optimizer untouched, the
data and the memory moving on) and the scale halves. Dropout seeds are stateless, folded from
(seed, step, micro-step, replica), and the data position is a counter, so a restored
checkpoint (weights, optimizer, step, memory, position) continues the run exactly.
"""

import contextlib
import dataclasses
import logging
import math
import re
import signal
import time

import keras
import tensorflow as tf

from pretrain.checkpointing import (CheckpointStore, check_model_dir, record_config_change,
                                    save_run_config, warn_if_other_dataset)
from pretrain.dataset_check import check_run_data
from pretrain.distribution import is_chief, worker_index
from pretrain.evaluator import Evaluator, samples_markdown, token_namer
from pretrain.flops import train_flops_per_token
from pretrain.init_checkpoint import read_init_checkpoint
from pretrain.input_pipeline import (MODEL_INPUTS, InputPipeline, StreamPlan,
                                     load_dataset_info)
from pretrain.learning_rate_schedule import WarmupDecaySchedule
from pretrain.memory_state import MemoryState
from pretrain.optimizer import DynamicLossScale, build_optimizer
from pretrain.run_lock import RunLock
from pretrain.summaries import (EvalReporter, StepReporter, detect_peak_tflops,
                                write_dataset_summaries, write_hparams)
from xlnet.errors import UserError
from xlnet.formats.model_dir import ModelDirectory, training_checkpoint
from xlnet.formats.original_checkpoint import assign_to_model
from xlnet.model.lm_loss import per_example_lm_loss
from xlnet.model.xlnet_lm import XLNetLM
from xlnet.schema import read_stats

logger = logging.getLogger(__name__)

EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped on request after saving


def layer_groups(model):
    """For each layer, the indices in `model.trainable_variables` of its own variables (those
    under `layer_<i>/`; the stacked per-layer biases and the embeddings belong to none)."""
    names = {id(variable): name for name, variable in model.original_variables().items()}
    layers = [re.search(r"/layer_(\d+)/", names[id(v)]) for v in model.trainable_variables]
    return [[j for j, found in enumerate(layers) if found and int(found.group(1)) == i]
            for i in range(model.config.n_layer)]


@dataclasses.dataclass
class _DispatchedStep:
    step: int
    batch: dict  # per-replica input tensors
    metrics: dict  # name -> scalar tensor, not read yet
    memory: object  # the per-replica memory the step returned


class Trainer:

    def __init__(self, run_config, data_dir, model_dir, strategy, profile_steps=None,
                 init_checkpoint=None, verify_data=False, allow_config_change=False):
        """`init_checkpoint`: an original-format checkpoint (prefix or directory) whose weights
        start a new run; ignored when `model_dir` already has checkpoints to resume.
        `verify_data`: check every stream file's crc32c, not only on a dataset's first use.
        `allow_config_change`: resume although the train section changed (recorded)."""
        self.config = run_config
        self.model_dir = model_dir
        self.data_dir = data_dir
        self.directory = ModelDirectory(model_dir)
        self.init_checkpoint = init_checkpoint
        self.initialized_from = None
        self.strategy = strategy
        self.profile_steps = profile_steps
        self.chief = is_chief(strategy)
        train = run_config.train
        info = self.dataset_info = load_dataset_info(data_dir, run_config)
        check_run_data(info, data_dir, model_dir, train.eval_every, verify_data)
        self.plan = StreamPlan(info, data_dir, train.global_batch_size,
                               strategy.num_replicas_in_sync, train.seed)
        self.pipeline = InputPipeline(self.plan, run_config.data, train.seed,
                                      train.grad_accum_steps, train.resample_perm)
        self._config_changes = check_model_dir(model_dir, run_config, allow_config_change)
        warn_if_other_dataset(model_dir, info)
        self.schedule = WarmupDecaySchedule.from_train_config(train)
        keras.utils.set_random_seed(train.seed)
        with strategy.scope():
            self.model = XLNetLM(run_config.model, remat=train.remat, dtype=train.precision)
            self.optimizer = build_optimizer(train, self.schedule,
                                             self.model.original_variables())
            self.optimizer.build(self.model.trainable_variables)
            self.loss_scale = (DynamicLossScale(train.loss_scale)
                               if train.precision == "mixed_float16" else None)
        # The loss scale is the scale of the mean loss per target, as with Keras (the step
        # differentiates a replica's sum): the sum is divided by the power of two at or
        # below the targets of a replica's micro-batch, which keeps the scaling exact.
        targets = train.global_batch_size // strategy.num_replicas_in_sync * (
            run_config.data.num_predict)
        self._loss_scale_divisor = 2.0 ** math.floor(math.log2(max(targets, 1)))
        self._layer_groups = layer_groups(self.model)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.data_position = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name="data_position")
        model = run_config.model
        canonical_rows = [self.plan.canonical_row(r) for r in range(train.global_batch_size)]
        self.memory = MemoryState(strategy, canonical_rows, model.n_layer, model.mem_len,
                                  model.d_model)
        checkpoint = training_checkpoint(self.model, self.optimizer, self.step,
                                         self.data_position)
        self._checkpoint = checkpoint
        if self.loss_scale is not None and "precision" not in self._config_changes:
            # The loss scale and its count of good steps (a run resumed from another
            # precision has none in its checkpoints: _train adds them after the restore).
            checkpoint.loss_scale = self.loss_scale
        self.checkpoints = CheckpointStore(checkpoint, model_dir, train.keep_checkpoints,
                                           self.step, self.chief, worker_index(strategy))
        self.evaluator = None
        if train.eval_every:
            if not info.eval_passes:
                raise UserError(
                    f"train.eval_every: {data_dir} has no eval split; prepare it with "
                    "data.eval_fraction > 0 or --eval-input GLOB, or set train.eval_every: 0")
            self.evaluator = Evaluator(strategy, self.model, info, data_dir, run_config,
                                       segments=train.eval_segments)
            self._token_name = token_namer(info.tokenizer.get("path", ""))
        self._forward_backward = (tf.function(self._gradients, jit_compile=True)
                                  if train.jit_compile else self._gradients)
        self._stop_requested = False

    # ---- the step ---------------------------------------------------------------------------

    def _gradients(self, batch, memory, seed, loss_scale=None):
        """Forward + backward on one micro-batch: sums for the global mean, new memory, grads
        (of the loss sum times `loss_scale` when given: mixed_float16)."""
        inputs = {name: batch[name] for name in MODEL_INPUTS}
        if memory is not None:
            inputs["mems"] = memory  # [b, N, M, D]
        with tf.GradientTape() as tape:
            outputs = self.model(inputs, training=True, dropout_seed=seed)
            loss_sums, weight_sums = per_example_lm_loss(
                outputs["logits"], batch["targets"], batch["target_weights"])  # [b], [b]
            loss_sum = tf.reduce_sum(loss_sums)
            scaled_loss = loss_sum if loss_scale is None else loss_sum * loss_scale
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        predicted = tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)  # [b, K]
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, batch["targets"]), tf.float32)
                                * batch["target_weights"])
        return (loss_sum, tf.reduce_sum(weight_sums), correct, outputs.get("new_mems"),
                grads)

    def _dropout_seed(self, step, micro, replica):
        seed = tf.constant([self.config.train.seed, 0x0d7], tf.int64)
        for value in (step, micro, replica):
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(value, tf.int64))
        return tf.cast(seed, tf.int32)  # [2]

    def _replica_step(self, batch, memory, step, stop_requested):
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group
        train = self.config.train
        loss_sum = weight_sum = correct = 0.0
        grads = None
        # mixed_float16: the loss is scaled before the gradient (the scale as it stands at
        # this step, read here, outside XLA) so that small gradients do not flush to zero.
        scale = multiplier = None
        if self.loss_scale is not None:
            scale = tf.identity(self.loss_scale.scale)
            multiplier = scale / self._loss_scale_divisor
        for micro in range(train.grad_accum_steps):
            micro_batch = {name: value[micro] for name, value in batch.items()}
            if memory is not None:
                # A row that starts a new stream starts from zero memory (the original start).
                continuing = tf.cast(micro_batch["index"] > 0, memory.dtype)  # [b]
                memory = memory * continuing[:, None, None, None]
            seed = self._dropout_seed(step, micro, replica)
            micro_loss, micro_weight, micro_correct, memory, micro_grads = (
                self._forward_backward(micro_batch, memory, seed, multiplier))
            loss_sum += micro_loss
            weight_sum += micro_weight
            correct += micro_correct
            grads = micro_grads if grads is None else [a + g for a, g in zip(grads, micro_grads)]
        # The stop request rides along, so every worker stops after the same step. (Made a
        # value of this replica's device: all_reduce refuses a host value passed to all.)
        stop_requested = stop_requested * tf.ones_like(weight_sum)
        sums = [weight_sum, loss_sum, correct, stop_requested]
        if scale is not None:  # how many replicas have a non-finite gradient
            sums.append(1.0 - tf.cast(tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(g)) for g in grads]), tf.float32))
        total_weight, total_loss, total_correct, stops, *overflowed = context.all_reduce(
            tf.distribute.ReduceOp.SUM, sums)
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if scale is not None:  # unscaled after the sum, before the norm and the clip
            grads = [g / multiplier for g in grads]
        grads = [tf.math.divide_no_nan(g, total_weight) for g in grads]
        grad_norm = tf.linalg.global_norm(grads)
        layer_grad_norms = tf.stack([tf.linalg.global_norm([grads[j] for j in group])
                                     for group in self._layer_groups])  # [N]
        if train.clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, train.clip_norm, use_norm=grad_norm)
        # The optimizer sums over replicas once more: hand it each replica's share.
        replicas = self.strategy.num_replicas_in_sync
        shares = [g / replicas for g in grads]
        metrics = {"loss": tf.math.divide_no_nan(total_loss, total_weight),
                   "accuracy": tf.math.divide_no_nan(total_correct, total_weight),
                   "grad_norm": grad_norm, "layer_grad_norms": layer_grad_norms, "stop": stops}
        if scale is None:
            self.optimizer.apply(shares, self.model.trainable_variables)
        else:
            # One decision for every replica and worker: no replica had a non-finite
            # gradient (an all-reduced count) and the summed, unscaled gradient is finite
            # (the same all-reduced values everywhere).
            finite = tf.logical_and(tf.equal(overflowed[0], 0.0), tf.math.is_finite(grad_norm))
            context.merge_call(self._apply_if_finite, args=(shares, finite))
            metrics.update(skipped=1.0 - tf.cast(finite, tf.float32), loss_scale=scale)
        return memory, metrics

    def _apply_if_finite(self, strategy, shares, finite):
        """mixed_float16, in the cross-replica context: applies the gradients when they are
        finite, else leaves the weights, the optimizer's moments and its step count as they
        are (the step is skipped); then moves the loss scale. (A cond whose branch applies
        must run here: under a strategy the optimizer's apply calls merge_call itself.)"""
        finite = strategy.experimental_local_results(finite)[0]  # equal on every replica

        def apply():
            strategy.extended.call_for_each_replica(
                lambda shares: self.optimizer.apply(shares, self.model.trainable_variables),
                args=(shares,))

        tf.cond(finite, apply, lambda: None)
        self.loss_scale.update(finite)

    @tf.function
    def _train_step(self, batch, memory, step, stop_requested):
        new_memory, metrics = self.strategy.run(self._replica_step,
                                                args=(batch, memory, step, stop_requested))
        # Every replica computed the same all-reduced metrics; take the first one's.
        metrics = {name: self.strategy.experimental_local_results(value)[0]
                   for name, value in metrics.items()}
        return new_memory, metrics

    # ---- the loop ---------------------------------------------------------------------------

    def restore(self):
        """Restores the newest loadable checkpoint, else (a new run) the weights of
        `init_checkpoint` if given; returns the path restored from, or None."""
        path = self.checkpoints.restore_newest()
        if path:
            # Only this worker's rows, from the shards that hold them.
            self.memory.restore(self.directory, path)
            logger.info("resumed from %s at step %d", path, int(self.step.numpy()))
            if self.init_checkpoint:
                logger.info("--init-checkpoint %s ignored: the model dir has checkpoints, "
                            "so the run resumes", self.init_checkpoint)
            return path
        if self.init_checkpoint:
            path = self._initialize_from(self.init_checkpoint)
        self.memory.distribute()
        return path

    def _initialize_from(self, init_checkpoint):
        """Assigns an original checkpoint's weights; the optimizer, step and memory stay new."""
        prefix, arrays = read_init_checkpoint(init_checkpoint, self.config, self.dataset_info)
        assign_to_model(self.model, arrays, self.config.model, prefix)
        self.initialized_from = prefix
        logger.info("initialized %d variables from %s; the optimizer starts fresh", len(arrays),
                    prefix)
        return prefix

    def save(self):
        step = int(self.step.numpy())
        # Each worker's memory rows first; the chief's manifest once all are whole; then the
        # checkpoint, whose index makes the whole count.
        self.memory.save(self.directory, step, self.chief)
        path = self.checkpoints.save(step)
        if self.chief:
            logger.info("saved checkpoint %s", path)
        return path

    def evaluate(self, step, reporter=None):
        """Scores the eval split at `step` (TensorBoard eval runs, eval.json); the time it
        takes is left out of the training rates."""
        started = time.perf_counter()
        metrics = self.evaluator.evaluate()
        self._eval_reporter.log(step, metrics)
        if self.chief:
            self.directory.write_eval({"step": step, "split": "eval", **metrics})
            self._eval_reporter.write_text(
                "eval/samples", samples_markdown(self.evaluator.predictions(), self._token_name),
                step)
        if reporter is not None:
            reporter.exclude(time.perf_counter() - started)
        return metrics

    def _distributed_dataset(self, steps):
        position = int(self.data_position.numpy())

        def dataset_fn(context):
            replicas_per_worker = context.num_replicas_in_sync // context.num_input_pipelines
            return self.pipeline.worker_dataset(context.input_pipeline_id, replicas_per_worker,
                                                position, steps)

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _reporter(self):
        train, data = self.config.train, self.config.data
        device_peak = train.peak_tflops or detect_peak_tflops(train.precision)
        peak = device_peak * self.strategy.num_replicas_in_sync  # tokens/s counts all replicas
        reporter = StepReporter(
            self.directory.train_log_dir, train.steps,
            tokens_per_step=train.global_batch_size * train.grad_accum_steps * data.seq_len,
            flops_per_token=train_flops_per_token(self.config.model, data), peak_tflops=peak,
            enabled=self.chief)
        if not peak:
            logger.info("no known peak for this device: set train.peak_tflops to report MFU")
        return reporter

    def train(self, on_step=None):
        """Runs to `train.steps`; returns 0, or EXIT_TERMINATED after a SIGTERM (saved).

        The chief holds the model dir's lock throughout (pretrain/run_lock.py). `on_step(
        trainer, step, batch, metrics, memory)` is called for every step, with the per-replica
        memory that step returned (tests use it).
        """
        lock = RunLock(self.model_dir) if self.chief else contextlib.nullcontext()
        # From here on a SIGTERM stops the run after a step and a save, so the lock is
        # released on the way out.
        previous_handler = signal.signal(signal.SIGTERM, self._request_stop)
        try:
            with lock:
                return self._train(on_step)
        finally:
            signal.signal(signal.SIGTERM, previous_handler)

    def _train(self, on_step):
        train = self.config.train
        self.restore()
        if self.loss_scale is not None and not hasattr(self._checkpoint, "loss_scale"):
            self._checkpoint.loss_scale = self.loss_scale  # saved from now on
        # The optimizer counts only the steps it applied (mixed_float16 skips overflows).
        self._skipped_steps = int(self.step.numpy()) - int(self.optimizer.iterations.numpy())
        if self.chief:
            if self._config_changes:
                record_config_change(self.model_dir, self._config_changes,
                                     int(self.step.numpy()))
            save_run_config(self.model_dir, self.config, self.dataset_info)
            if self.initialized_from:
                self.directory.write_init_checkpoint(
                    self.initialized_from, len(self.model.original_variables()))
        start = int(self.step.numpy())
        if start >= train.steps:
            logger.info("nothing to do: the checkpoint is at step %d of %d", start, train.steps)
            return 0
        reporter = self._reporter()
        self._eval_reporter = self.evaluator and EvalReporter(
            self.directory.eval_log_dir, self.directory.eval_no_memory_log_dir, self.chief)
        if start == 0 and self.chief:
            reporter.write_text("config", f"```\n{self.config.to_yaml()}```", 0)
            write_dataset_summaries(reporter.writer, read_stats(self.data_dir))
            write_hparams(self.model_dir, self.config,
                          trial_id=self.model_dir.rstrip("/").rsplit("/", 1)[-1])
        iterator = iter(self._distributed_dataset(train.steps - start))
        with reporter:
            return self._loop(iterator, start, reporter, on_step)

    def _loop(self, iterator, start, reporter, on_step):
        """Dispatches step N, then reads step N-1's metrics: the device runs one step ahead of
        the host's bookkeeping and never waits for it. Steps that save read their own
        metrics first, so a checkpoint never follows an unchecked loss."""
        train = self.config.train
        memory = self.memory.current
        reporter.start(time.perf_counter(), start)
        pending = None  # the dispatched step whose metrics are not read yet
        for step in range(start + 1, train.steps + 1):
            self._maybe_profile(step, starting=True)
            batch = next(iterator)
            memory, metrics = self._train_step(batch, memory, tf.constant(step - 1, tf.int64),
                                               tf.constant(float(self._stop_requested)))
            self.memory.update(memory)
            self.step.assign(step)
            self.data_position.assign_add(train.grad_accum_steps)
            stop = pending is not None and self._finish(pending, reporter, on_step)
            pending = _DispatchedStep(step, batch, metrics, memory)
            saving = step % train.checkpoint_every == 0 or step == train.steps
            evaluating = self.evaluator is not None and (
                step % train.eval_every == 0 or step == train.steps)
            if stop or saving or evaluating or self._profile_ends(step):
                stop = self._finish(pending, reporter, on_step) or stop
                pending = None
            self._maybe_profile(step, starting=False)
            if stop or saving:
                self.save()
            if evaluating and not stop:
                self.evaluate(step, reporter)
            if stop:  # SIGTERM on any worker: all of them stop after the same step
                logger.info("stopped by SIGTERM at step %d; the checkpoint resumes it", step)
                return EXIT_TERMINATED
        return 0

    def _finish(self, dispatched, reporter, on_step):
        """Reads a dispatched step's metrics: stops on a non-finite loss, reports, logs.
        Returns whether a SIGTERM reached any worker by that step."""
        step = dispatched.step
        values = {name: float(value) for name, value in dispatched.metrics.items()
                  if name != "layer_grad_norms"}
        layer_grad_norms = dispatched.metrics["layer_grad_norms"].numpy()  # [N]
        stop = values.pop("stop") > 0
        # The schedule follows the optimizer's own step count: the updates applied before.
        learning_rate = float(self.schedule(step - 1 - self._skipped_steps))
        skipped = values.get("skipped", 0.0) > 0
        if skipped:
            self._check_skipped(step, values)
        elif not (math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"])):
            # A finite loss with non-finite gradients still leaves non-finite weights.
            raise UserError(
                f"step {step}: the loss is {values['loss']} and the gradient norm "
                f"{values['grad_norm']}; stopped without saving. Last "
                f"good checkpoint: {self.checkpoints.latest or 'none'} (lower "
                "train.learning_rate or raise train.warmup_steps, then run again)")
        reporter.add(values, layer_grad_norms)
        if on_step is not None:
            on_step(self, step, dispatched.batch, values, dispatched.memory)
        if step % self.config.train.log_every == 0 or step == self.config.train.steps:
            fp16 = {} if self.loss_scale is None else {
                "loss_scale": values["loss_scale"], "skipped_steps": self._skipped_steps}
            reporter.log(step, learning_rate, time.perf_counter(), fp16)
        return stop

    def _check_skipped(self, step, values):
        """mixed_float16: a step whose gradients overflowed was skipped (weights, optimizer
        and its step count untouched; the data and the memory moved on). Counts it; stops the
        run when the loss itself is not finite (a forward pass out of float16's range, which
        no loss scale mends) or when the gradients overflow even at a scale of 1."""
        self._skipped_steps += 1
        scale = values["loss_scale"]
        if self.chief:
            logger.info("step %d: gradients not finite at loss scale %.10g: step skipped "
                        "(%d so far), the scale halved", step, scale, self._skipped_steps)
        if not math.isfinite(values["loss"]) or scale <= 1.0:
            raise UserError(
                f"step {step}: the loss is {values['loss']} and the gradients are not finite "
                f"at loss scale {scale:.10g} under train.precision mixed_float16; stopped without "
                f"saving. Last good checkpoint: {self.checkpoints.latest or 'none'} (resume "
                "with --set train.precision=mixed_bfloat16 or float32 and "
                "--allow-config-change, or lower train.learning_rate)")

    def _request_stop(self, signum, frame):
        logger.info("SIGTERM: stopping after this step (a checkpoint will be saved)")
        self._stop_requested = True

    def _profile_ends(self, step):
        # Every worker, not only the profiling chief: all must read a step at the same point.
        return bool(self.profile_steps) and step == self.profile_steps[1]

    def _maybe_profile(self, step, starting):
        if not self.profile_steps or not self.chief:
            return
        first, last = self.profile_steps
        if starting and step == first:
            tf.profiler.experimental.start(self.directory.profile_dir)
        elif not starting and step == last:
            tf.profiler.experimental.stop()
            logger.info("profile of steps %d-%d written to %s", first, last,
                        self.directory.profile_dir)
