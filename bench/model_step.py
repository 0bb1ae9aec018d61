"""Training-step throughput of XLNetLM against HuggingFace's PyTorch XLNetLMHeadModel and
(optionally) TF Model Garden's XLNetPretrainer, each in its own process.

One step = forward (both streams, target_mapping, memory carried) + masked LM loss + backward +
global-norm clipping + AdamW, dropout on, on identical inputs. Two runtimes in one process
disturb each other's thread pools (the ratio read 1.05x that way under load, 1.4-1.9x apart),
so every implementation runs in a fresh process, one at a time, in an order rotated each
round; each prints its seconds per step. The table gives tokens/s (B*L per step) as median
and min-max over the rounds, and each ratio as the median and min-max of its per-round ratios.

    .venv/bin/python bench/model_step.py --shapes tiny d256 --rounds 3
    .venv/bin/python bench/model_step.py --shapes base --steps 5 --warmup 2 --rounds 2
    .venv/bin/python bench/model_step.py --model-garden-python /tmp/mg/bin/python

Model Garden needs its own environment (it pins its own TensorFlow):
`python3 -m venv /tmp/mg && /tmp/mg/bin/pip install tf-models-official`.
"""

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

log = logging.getLogger("bench.model_step")

# name: (model fields, batch, seq_len, num_predict)
SHAPES = {
    "tiny": (dict(n_layer=2, d_model=64, n_head=4, d_head=16, d_inner=256, n_token=2000,
                  mem_len=48, reuse_len=32), 8, 64, 10),
    "d256": (dict(n_layer=4, d_model=256, n_head=4, d_head=64, d_inner=1024, n_token=8000,
                  mem_len=96, reuse_len=64), 8, 128, 21),
    "base": (dict(n_layer=12, d_model=768, n_head=12, d_head=64, d_inner=3072, n_token=32000,
                  mem_len=384, reuse_len=256), 2, 512, 85),
}
SEGMENTS = 4  # distinct input segments, cycled
OURS = ("graph", "xla", "bf16", "bf16-xla")
DEFAULT = "graph"  # what `xlnet pretrain` runs unless train.jit_compile / train.precision


def make_segments(shape, seed=0):
    """Random segments with real permutation masks (original-xlnet.md §5) and K targets each,
    stacked [SEGMENTS, ...] per input."""
    import tensorflow as tf

    from xlnet.model.permutation import permutation_inputs, sample_perm_ranks

    fields, batch, seq_len, num_predict = SHAPES[shape]
    rng = np.random.default_rng(seed)
    segments = []
    for index in range(SEGMENTS):
        input_ids = rng.integers(9, fields["n_token"], (batch, seq_len)).astype(np.int32)
        is_masked = np.zeros((batch, seq_len), np.int32)
        for b in range(batch):
            is_masked[b, rng.choice(seq_len, num_predict, replace=False)] = 1
        ranks = sample_perm_ranks(tf.constant([seed, index]), batch, seq_len,
                                  fields["reuse_len"], fields["reuse_len"])
        perm = permutation_inputs(input_ids, is_masked, ranks, fields["reuse_len"],
                                  num_predict)
        segment_ids = np.zeros((batch, seq_len), np.int32)
        segment_ids[:, seq_len * 3 // 4:] = 1
        segments.append({"input_ids": input_ids, "segment_ids": segment_ids,
                         **{k: perm[k].numpy() for k in ("perm_mask", "target_mapping",
                                                          "targets", "target_weights")}})
    return {k: np.stack([s[k] for s in segments]) for k in segments[0]}


def time_steps(step, segments, warmup, steps):
    """Seconds per step over `steps` timed steps after `warmup` untimed ones."""
    def segment(i):
        return {k: v[i % SEGMENTS] for k, v in segments.items()}

    for i in range(warmup):
        step(segment(i), i)
    start = time.perf_counter()
    for i in range(steps):
        step(segment(i), warmup + i)
    return (time.perf_counter() - start) / steps


def keras_step(fields, batch, mode):
    import keras
    import tensorflow as tf

    from xlnet.config.model_config import XLNetConfig
    from xlnet.model.lm_loss import masked_lm_loss
    from xlnet.model.xlnet_lm import XLNetLM

    config = XLNetConfig(**fields, dropout=0.1, dropatt=0.1)
    model = XLNetLM(config, dtype="mixed_bfloat16" if mode.startswith("bf16") else None)
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6)
    optimizer.build(model.trainable_variables)
    mems = tf.Variable(tf.zeros([batch, config.n_layer, config.mem_len, config.d_model]),
                       trainable=False)

    @tf.function(jit_compile=mode.endswith("xla"))
    def train(inputs, targets, weights, seed):
        with tf.GradientTape() as tape:
            outputs = model(dict(inputs, mems=mems.read_value()), training=True,
                            dropout_seed=seed)
            loss = masked_lm_loss(outputs["logits"], targets, weights)
        gradients = tape.gradient(loss, model.trainable_variables)
        gradients, _ = tf.clip_by_global_norm(gradients, 1.0)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        mems.assign(outputs["new_mems"])
        return loss

    def step(segment, index):
        inputs = {k: segment[k] for k in ("input_ids", "segment_ids", "perm_mask",
                                          "target_mapping")}
        train(inputs, segment["targets"], segment["target_weights"],
              tf.constant([index, 0])).numpy()

    return step


def torch_step(fields, batch):
    import torch
    import transformers

    hf = transformers.XLNetLMHeadModel(transformers.XLNetConfig(
        vocab_size=fields["n_token"], d_model=fields["d_model"], n_layer=fields["n_layer"],
        n_head=fields["n_head"], d_inner=fields["d_inner"], ff_activation="gelu_new",
        mem_len=fields["mem_len"], reuse_len=fields["reuse_len"], dropout=0.1,
        use_mems_train=True)).train()
    optimizer = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
    state = {"mems": [torch.zeros(fields["mem_len"], batch, fields["d_model"])]
             * fields["n_layer"]}

    def step(segment, index):
        tensors = {k: torch.from_numpy(v) for k, v in segment.items()}
        out = hf(input_ids=tensors["input_ids"].long(),
                 token_type_ids=tensors["segment_ids"].long(), perm_mask=tensors["perm_mask"],
                 target_mapping=tensors["target_mapping"], mems=state["mems"], use_mems=True)
        cross_entropy = torch.nn.functional.cross_entropy(
            out.logits.transpose(1, 2), tensors["targets"].long(), reduction="none")
        weights = tensors["target_weights"]
        loss = (cross_entropy * weights).sum() / weights.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        optimizer.step()
        state["mems"] = out.mems
        loss.item()

    return step


def model_garden_step(fields, batch):
    """Model Garden's XLNetPretrainer (two-stream, memory), graph mode, in its own venv."""
    import tensorflow as tf
    from official.nlp.modeling import models, networks

    network = networks.XLNetBase(
        vocab_size=fields["n_token"], num_layers=fields["n_layer"],
        hidden_size=fields["d_model"], num_attention_heads=fields["n_head"],
        head_size=fields["d_head"], inner_size=fields["d_inner"], dropout_rate=0.1,
        attention_dropout_rate=0.1, attention_type="bi", bi_data=False,
        initializer=tf.keras.initializers.RandomNormal(stddev=0.02), two_stream=True,
        tie_attention_biases=False, memory_length=fields["mem_len"],
        reuse_length=fields["reuse_len"], inner_activation="gelu")
    model = models.XLNetPretrainer(network)
    optimizer = tf.keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6)
    state = [tf.Variable(tf.zeros([batch, fields["mem_len"], fields["d_model"]]),
                         trainable=False) for _ in range(fields["n_layer"])]

    @tf.function
    def train(segment):
        with tf.GradientTape() as tape:
            logits, new_state = model(dict(
                input_word_ids=segment["input_ids"], input_type_ids=segment["segment_ids"],
                masked_tokens=tf.zeros(tf.shape(segment["input_ids"])),
                # Model Garden's mask is 1 where a position may attend: the original's inverse.
                permutation_mask=1.0 - segment["perm_mask"],
                target_mapping=segment["target_mapping"],
                state=[s.read_value() for s in state]), training=True)
            cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
                segment["targets"], tf.cast(logits, tf.float32))
            weights = segment["target_weights"]
            loss = tf.reduce_sum(cross_entropy * weights) / tf.reduce_sum(weights)
        variables = model.trainable_variables
        gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 1.0)
        optimizer.apply_gradients(zip(gradients, variables))
        for variable, value in zip(state, new_state):
            variable.assign(value)
        return loss

    return lambda segment, index: train(segment).numpy()


def run_worker(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    fields, batch, _, _ = SHAPES[args.shape]
    with np.load(args.segments) as stored:
        segments = dict(stored)
    if args.worker == "pytorch":
        step = torch_step(fields, batch)
    elif args.worker == "model-garden":
        step = model_garden_step(fields, batch)
    else:
        step = keras_step(fields, batch, args.worker)
    seconds = time_steps(step, segments, args.warmup, args.steps)
    print(json.dumps({"seconds_per_step": seconds}), flush=True)


def _measure(python, implementation, shape, segments_path, args):
    command = [python, os.path.abspath(__file__), "--worker", implementation,
               "--shape", shape, "--segments", segments_path, "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{implementation} at {shape} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds_per_step"]


def _spread(values, fmt):
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}-{fmt.format(max(values))})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["tiny", "d256"], choices=SHAPES)
    parser.add_argument("--modes", nargs="+", default=["graph", "xla"], choices=OURS,
                        help="our model's modes (default: graph, the trainer's default, "
                        "and xla)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--model-garden-python", metavar="PYTHON",
                        help="a Python with tf-models-official installed (its own venv)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--segments", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pythons = {mode: sys.executable for mode in args.modes}
    if not args.no_torch:
        pythons["pytorch"] = sys.executable
    if args.model_garden_python:
        pythons["model-garden"] = args.model_garden_python
    implementations = list(pythons)
    log.info("machine: %s, %d CPUs; %d rounds, order rotated each round", _cpu_name(),
             os.cpu_count(), args.rounds)
    with tempfile.TemporaryDirectory() as scratch:
        for shape in args.shapes:
            fields, batch, seq_len, num_predict = SHAPES[shape]
            segments_path = os.path.join(scratch, f"{shape}.npz")
            np.savez(segments_path, **make_segments(shape))
            seconds = {name: [] for name in implementations}
            for round_index in range(args.rounds):
                shift = round_index % len(implementations)
                for name in implementations[shift:] + implementations[:shift]:
                    seconds[name].append(_measure(pythons[name], name, shape, segments_path,
                                                  args))
            _report(shape, fields, batch, seq_len, num_predict, seconds, args)


def _report(shape, fields, batch, seq_len, num_predict, seconds, args):
    tokens = batch * seq_len
    log.info("%s: B=%d L=%d M=%d K=%d d=%d x %d layers, V=%d; %d timed steps per process",
             shape, batch, seq_len, fields["mem_len"], num_predict, fields["d_model"],
             fields["n_layer"], fields["n_token"], args.steps)
    baselines = [name for name in ("pytorch", "model-garden") if name in seconds]
    for name, values in seconds.items():
        ratios = "".join(
            f"  {_spread([b / s for b, s in zip(seconds[base], values)], '{:.2f}')}x {base}"
            for base in baselines if base != name and name in OURS)
        log.info("  %-12s %s tokens/s%s", name, _spread([tokens / s for s in values],
                                                          "{:,.0f}"), ratios)


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    main()
