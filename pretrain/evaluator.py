"""Held-out evaluation with and without memory, under the trainer's strategy.

Each evaluation reads the same segments: every row walks its eval streams from their start
(the rows of `StreamPlan`, as in training) for `segments` segments, starting from fresh memory
and carrying it from segment to segment exactly as training does (zero memory where a stream
starts). Dropout is off and the stored factorization orders are used. Each segment is scored
twice: with the memory it carried, and with no memory at all, so the memory's worth is the
difference of two numbers read from the same targets.
"""

import logging
import math

import numpy as np
import tensorflow as tf

from pretrain.input_pipeline import MODEL_INPUTS, InputPipeline, StreamPlan
from xlnet import schema
from xlnet.errors import UserError
from xlnet.model.lm_loss import per_example_lm_loss
from xlnet.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

SUMS = ("loss", "targets", "correct", "loss_no_memory", "correct_no_memory")


def metrics_from_sums(sums, segments, memory_share=None):
    """The reported metrics from summed losses, targets and correct predictions, and each
    layer's mean attention probability on the memory slots when there is memory."""
    targets = sums["targets"]
    loss = sums["loss"] / max(targets, 1.0)
    loss_no_memory = sums["loss_no_memory"] / max(targets, 1.0)
    return {
        "segments": segments,
        "targets": int(targets),
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": sums["correct"] / max(targets, 1.0),
        "loss_no_memory": loss_no_memory,
        "perplexity_no_memory": math.exp(min(loss_no_memory, 700.0)),
        "accuracy_no_memory": sums["correct_no_memory"] / max(targets, 1.0),
        "memory_gain": loss_no_memory - loss,
        **({"memory_attention_share": memory_share} if memory_share is not None else {}),
    }


class Evaluator:

    def __init__(self, strategy, model, info, data_dir, run_config, split=schema.EVAL,
                 segments=None):
        """`segments`: segments per row (default: the split's whole first epoch, the shortest
        row deciding)."""
        self.strategy = strategy
        self.model = model
        train = run_config.train
        self.plan = StreamPlan(info, data_dir, train.global_batch_size,
                               strategy.num_replicas_in_sync, train.seed, split=split)
        self.pipeline = InputPipeline(self.plan, run_config.data, train.seed)
        available = self.plan.epoch_length(0)
        self.steps = min(segments, available) if segments else available
        model_config = run_config.model
        self.memory_shape = [self.plan.local_batch_size, model_config.n_layer,
                             model_config.mem_len, model_config.d_model]
        self.uses_memory = model_config.mem_len > 0
        self._distributed = None

    @property
    def segments(self):
        return self.steps * self.plan.global_batch_size

    def _replica_step(self, batch, memory):
        context = tf.distribute.get_replica_context()
        micro = {name: value[0] for name, value in batch.items()}  # one micro-step per element
        inputs = {name: micro[name] for name in MODEL_INPUTS}
        targets, weights = micro["targets"], micro["target_weights"]  # [b, K] each
        new_memory = share = None
        if self.uses_memory:
            continuing = tf.cast(micro["index"] > 0, memory.dtype)  # [b]: zero at a stream start
            with_memory = self.model({**inputs, "mems": memory * continuing[:, None, None, None]},
                                     training=False, memory_share=True)
            new_memory = with_memory["new_mems"]  # [b, N, M, D]
            share = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                       with_memory["memory_share"])  # [N]
        else:
            with_memory = self.model(inputs, training=False)
        without_memory = self.model(inputs, training=False)
        loss, target_count = per_example_lm_loss(with_memory["logits"], targets, weights)
        loss_no_memory, _ = per_example_lm_loss(without_memory["logits"], targets, weights)
        weights = tf.cast(weights, tf.float32)

        def correct(logits):
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)  # [b, K]
            return tf.reduce_sum(tf.cast(tf.equal(predicted, targets), tf.float32) * weights)

        sums = [tf.reduce_sum(loss), tf.reduce_sum(target_count),
                correct(with_memory["logits"]), tf.reduce_sum(loss_no_memory),
                correct(without_memory["logits"])]
        return new_memory, context.all_reduce(tf.distribute.ReduceOp.SUM, sums), share

    @tf.function
    def _step(self, batch, memory):
        new_memory, sums, share = self.strategy.run(self._replica_step, args=(batch, memory))
        first = self.strategy.experimental_local_results
        return (new_memory, [first(s)[0] for s in sums],
                None if share is None else first(share)[0])

    def _fresh_memory(self):
        if not self.uses_memory:
            return None
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: tf.zeros(self.memory_shape))

    def predictions(self, rows=3, top_k=5):
        """The model's top-k guesses at the target rows of the first eval segment of the first
        `rows` rows (stream starts: zero memory), as numpy arrays: input_ids [r, L], positions
        [r, K] (-1 for a padding row), truth [r, K], top_ids [r, K, k], top_probs [r, K, k]."""
        element = next(iter(self.pipeline.worker_dataset(0, 1, 0, 1)))  # replica 0's rows
        batch = {name: value[0] for name, value in element.items()}
        inputs = {name: batch[name] for name in MODEL_INPUTS}
        if self.uses_memory:
            inputs["mems"] = tf.zeros(self.memory_shape)
        # The whole local batch goes through (bi_data pairs rows); the first `rows` are shown.
        logits = self.model(inputs, training=False)["logits"][:rows]  # [r, K, V]
        batch = {name: value[:rows] for name, value in batch.items()}
        top_probs, top_ids = tf.math.top_k(tf.nn.softmax(logits), k=top_k)  # [r, K, k]
        real = batch["target_weights"] > 0  # [r, K]
        positions = tf.where(real, tf.argmax(batch["target_mapping"], axis=-1,
                                             output_type=tf.int32), -1)
        return {"input_ids": batch["input_ids"].numpy(), "positions": positions.numpy(),
                "truth": batch["targets"].numpy(), "top_ids": top_ids.numpy(),
                "top_probs": top_probs.numpy()}

    def _dataset(self):
        """The eval segments as a distributed dataset, built once: every evaluation iterates
        it anew from its start."""
        if self._distributed is None:
            def dataset_fn(context):
                replicas_per_worker = (context.num_replicas_in_sync
                                       // context.num_input_pipelines)
                return self.pipeline.worker_dataset(context.input_pipeline_id,
                                                    replicas_per_worker, 0, self.steps)

            self._distributed = self.strategy.distribute_datasets_from_function(dataset_fn)
        return self._distributed

    def evaluate(self):
        """Scores `steps` segments per row; returns metrics_from_sums' dict."""
        dataset = self._dataset()
        memory = self._fresh_memory()
        totals = [0.0] * len(SUMS)
        share = 0.0
        for batch in dataset:
            memory, sums, step_share = self._step(batch, memory)
            totals = [total + float(value) for total, value in zip(totals, sums)]
            if step_share is not None:
                share = share + step_share.numpy().astype(np.float64)  # [N]
        return metrics_from_sums(
            dict(zip(SUMS, totals)), self.segments,
            (share / self.steps).tolist() if self.uses_memory else None)


def _target_counts(plan, pipeline, steps, vocab_size):
    counts = np.zeros(vocab_size, np.float64)
    for element in pipeline.worker_dataset(0, 1, 0, steps):
        weights = element["target_weights"].numpy().ravel() > 0
        np.add.at(counts, element["targets"].numpy().ravel()[weights], 1.0)
    return counts


def unigram_baseline(info, data_dir, run_config, segments=None):
    """The eval targets' cross-entropy (nats) under the train targets' token frequencies
    (add-one smoothed): what a model that ignores all context scores on the same targets.
    The train split's first epoch is counted; `segments` per row bound the eval side as in
    Evaluator."""
    train, vocab_size = run_config.train, run_config.model.n_token
    plans = {split: StreamPlan(info, data_dir, train.global_batch_size, 1, train.seed,
                               split=split) for split in (schema.TRAIN, schema.EVAL)}
    pipelines = {split: InputPipeline(plan, run_config.data, train.seed)
                 for split, plan in plans.items()}
    train_counts = _target_counts(plans[schema.TRAIN], pipelines[schema.TRAIN],
                                  plans[schema.TRAIN].epoch_length(0), vocab_size)
    eval_steps = plans[schema.EVAL].epoch_length(0)
    eval_counts = _target_counts(plans[schema.EVAL], pipelines[schema.EVAL],
                                 min(segments, eval_steps) if segments else eval_steps,
                                 vocab_size)
    log_p = np.log((train_counts + 1.0) / (train_counts.sum() + vocab_size))
    return float(-(eval_counts * log_p).sum() / max(eval_counts.sum(), 1.0))


def token_namer(tokenizer_path):
    """id -> piece through the dataset's tokenizer, or the id itself when it cannot be read."""
    try:
        return Tokenizer.load(tokenizer_path).id_to_piece
    except UserError as e:
        logger.info("eval samples show token ids: %s", e)
        return str


def samples_markdown(predictions, name_token):
    """Predictions (Evaluator.predictions) as Markdown: each row's text with the targets in
    brackets, then a table of truth against the top guesses. `name_token(id)` names a token."""
    def piece(token):
        return name_token(token).replace("|", "\\|")

    blocks = []
    for row, input_ids in enumerate(predictions["input_ids"]):
        targets = {int(p): k for k, p in enumerate(predictions["positions"][row]) if p >= 0}
        text = " ".join(f"**[{piece(int(t))}]**" if i in targets else piece(int(t))
                        for i, t in enumerate(input_ids))
        lines = [f"row {row}: {text}", "", "| position | truth | guesses (probability) |",
                 "|---|---|---|"]
        for position, k in sorted(targets.items()):
            guesses = ", ".join(
                f"{piece(int(i))} ({p:.2f})"
                for i, p in zip(predictions["top_ids"][row, k], predictions["top_probs"][row, k]))
            lines.append(f"| {position} | {piece(int(predictions['truth'][row, k]))} | "
                         f"{guesses} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
