"""Training-step throughput of XLNetLM against HuggingFace's PyTorch XLNetLMHeadModel.

One step = forward (both streams, target_mapping, memory carried) + masked LM loss + backward +
global-norm clipping + AdamW, dropout on, on identical inputs, in this process. Prints steps/s,
tokens/s (B·L per step) and our/PyTorch ratio for graph mode, XLA and (optionally) bf16.

    .venv/bin/python bench/model_step.py --shapes tiny d256 --steps 10
    .venv/bin/python bench/model_step.py --shapes base --steps 5 --warmup 2
"""

import argparse
import logging
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from xlnet.config.model_config import XLNetConfig  # noqa: E402
from xlnet.model.lm_loss import masked_lm_loss  # noqa: E402
from xlnet.model.permutation import permutation_inputs, sample_perm_ranks  # noqa: E402
from xlnet.model.xlnet_lm import XLNetLM  # noqa: E402

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


def make_segments(config, batch, seq_len, num_predict, seed=0):
    """Random segments with real permutation masks (original-xlnet.md §5) and K targets each."""
    rng = np.random.default_rng(seed)
    segments = []
    for index in range(SEGMENTS):
        input_ids = rng.integers(9, config.n_token, (batch, seq_len)).astype(np.int32)
        is_masked = np.zeros((batch, seq_len), np.int32)
        for b in range(batch):
            is_masked[b, rng.choice(seq_len, num_predict, replace=False)] = 1
        ranks = sample_perm_ranks(tf.constant([seed, index]), batch, seq_len, config.reuse_len,
                                  config.reuse_len)
        perm = permutation_inputs(input_ids, is_masked, ranks, config.reuse_len, num_predict)
        segment_ids = np.zeros((batch, seq_len), np.int32)
        segment_ids[:, seq_len * 3 // 4:] = 1
        segments.append({"input_ids": input_ids, "segment_ids": segment_ids,
                         "perm_mask": perm["perm_mask"].numpy(),
                         "target_mapping": perm["target_mapping"].numpy(),
                         "targets": perm["targets"].numpy(),
                         "target_weights": perm["target_weights"].numpy()})
    return segments


def time_steps(step, segments, warmup, steps):
    """Seconds per step over `steps` timed steps after `warmup` untimed ones."""
    for i in range(warmup):
        step(segments[i % SEGMENTS], i)
    start = time.perf_counter()
    for i in range(steps):
        step(segments[i % SEGMENTS], warmup + i)
    return (time.perf_counter() - start) / steps


def keras_step(config, batch, jit_compile, dtype):
    model = XLNetLM(config, dtype=dtype)
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6)
    optimizer.build(model.trainable_variables)
    mems = tf.Variable(tf.zeros([batch, config.n_layer, config.mem_len, config.d_model]),
                       trainable=False)

    @tf.function(jit_compile=jit_compile)
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


def torch_step(config, batch):
    import torch
    import transformers

    hf = transformers.XLNetLMHeadModel(transformers.XLNetConfig(
        vocab_size=config.n_token, d_model=config.d_model, n_layer=config.n_layer,
        n_head=config.n_head, d_inner=config.d_inner, ff_activation="gelu_new",
        mem_len=config.mem_len, reuse_len=config.reuse_len, dropout=config.dropout,
        use_mems_train=True)).train()
    optimizer = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6)
    state = {"mems": [torch.zeros(config.mem_len, batch, config.d_model)] * config.n_layer}

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["tiny", "d256"], choices=SHAPES)
    parser.add_argument("--modes", nargs="+", default=["graph", "xla", "bf16"],
                        choices=["graph", "xla", "bf16", "bf16-xla"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    for shape in args.shapes:
        fields, batch, seq_len, num_predict = SHAPES[shape]
        config = XLNetConfig(**fields, dropout=0.1, dropatt=0.1)
        segments = make_segments(config, batch, seq_len, num_predict)
        tokens = batch * seq_len
        results = {}
        if not args.no_torch:
            results["pytorch"] = time_steps(torch_step(config, batch), segments, args.warmup,
                                            args.steps)
        for mode in args.modes:
            dtype = "mixed_bfloat16" if mode.startswith("bf16") else None
            step = keras_step(config, batch, jit_compile=mode.endswith("xla"), dtype=dtype)
            results[mode] = time_steps(step, segments, args.warmup, args.steps)
        log.info("%s: B=%d L=%d M=%d K=%d d=%d x %d layers, V=%d, %d timed steps", shape,
                 batch, seq_len, config.mem_len, num_predict, config.d_model, config.n_layer,
                 config.n_token, args.steps)
        for name, seconds in results.items():
            ratio = (f"  {results['pytorch'] / seconds:.2f}x pytorch"
                     if "pytorch" in results else "")
            log.info("  %-8s %7.3f steps/s %9.0f tokens/s%s", name, 1 / seconds,
                     tokens / seconds, ratio)


if __name__ == "__main__":
    main()
