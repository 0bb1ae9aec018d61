"""Sizing a run before it starts (`xlnet plan`): parameters, training FLOPs per token, memory per
device, the largest local batch that fits, steps per day at a stated MFU.

Memory is what the trainer's step holds at its peak, counted tensor by tensor from the model's
code (xlnet/model/): float32 weights, two optimizer slots (AdamW and LAMB alike) and the
gradients; the recurrent memory the step takes and returns; and the activations the backward
pass keeps, per layer and stream. The step's peak is the larger of two moments: the start of the
backward pass (every layer's activations kept; the last layer's backward temporaries take the
place of what it frees) and the gradient post-processing after it (the trainer's successive
gradient copies). With recomputation, one layer's activations and backward temporaries come
back at a time beside every layer's inputs. Checked against TensorFlow's allocator statistics
for the trainer's step on a CPU (tests/test_plan.py, README).
"""

import dataclasses
import math

from pretrain.flops import train_flops_per_token
from xlnet.errors import UserError

FLOAT32 = 4
# The trainer makes four successive lists of full-size gradients (the tape's, the masked mean,
# the clipped one, each replica's share); measured at the Base shape they peak at about four.
GRADIENT_COPIES = 4
SECONDS_PER_DAY = 86400


def _activation_bytes(model, data):
    """(bytes one layer keeps for the backward pass, bytes of one layer's backward temporaries,
    bytes kept outside the layers) per example."""
    a = FLOAT32  # activations in float32 (mixed_bfloat16 halves most of them: not modelled)
    seq_len, targets, mem_len = data.seq_len, data.num_predict, model.mem_len
    keys = mem_len + seq_len
    heads, d, inner = model.n_head * model.d_head, model.d_model, model.d_inner
    dropout = 1 if model.dropout > 0 else 0
    dropatt = 1 if model.dropatt > 0 else 0

    def stream(rows, is_query):
        # Attention [T, n, M+L]: the softmax output; with dropatt its keep mask (bool) and the
        # dropped-out probabilities the value product reads; the query stream's gathered
        # rel_shift keeps its int32 indices.
        scores = rows * model.n_head * keys
        attention = scores * (a + dropatt * (1 + a) + (4 if is_query else 0))
        # [T, n·dh]: the query with each of its three biases added, the attended values (the
        # query stream's also weighted by the target row); [T, d]: dropout masks, the two
        # LayerNorms' inputs and outputs; [T, d_inner]: the tanh-GELU's pieces (input, tanh,
        # 1 + tanh, output) and the dropped-out copy with its mask.
        linear = (rows * heads * (3 + 1 + is_query) * a
                  + rows * d * (4 * a + 2 * dropout)
                  + rows * inner * ((4 + dropout) * a + dropout))
        return attention + linear

    # Keys and values from [memory ; content]: the concatenated input and both projections.
    shared = keys * (d + 2 * heads) * a
    kept = stream(seq_len, False) + stream(targets, True) + shared
    # Backward of one layer: gradients of the content scores and of the raw position scores
    # against all M + 2L encoding rows, the softmax gradient, the query stream's likewise.
    positions = keys + seq_len
    temporary = model.n_head * a * (seq_len + targets) * (2 * keys + positions)
    # Outside the layers: embeddings and their dropout, the float32 logits over the vocabulary
    # with the loss's softmax and its gradient.
    outside = seq_len * d * (a + dropout) + 3 * targets * model.n_token * FLOAT32
    return kept, temporary, outside


@dataclasses.dataclass(frozen=True)
class DeviceMemory:
    """Bytes on one device for a local batch."""
    weights: int
    optimizer: int
    gradients: int  # one full copy; the peak holds GRADIENT_COPIES of them
    memory_state: int  # the memory the step takes and the one it returns
    activations: int  # kept for the backward pass
    activations_remat: int  # the same with train.remat=layer, one layer's temporaries added

    def peak(self, remat):
        activations = self.activations_remat if remat else self.activations
        resident = self.weights + self.optimizer + self.memory_state
        return resident + max(activations + self.gradients,
                              GRADIENT_COPIES * self.gradients)


def device_memory(model, data, local_batch):
    parameters = model.num_parameters
    kept, temporary, outside = _activation_bytes(model, data)
    # With remat each layer keeps only its inputs (content [L, d], query [K, d]); one layer
    # is recomputed at a time, so one layer's activations come back during its backward.
    layer_inputs = (data.seq_len + data.num_predict) * model.d_model * FLOAT32
    return DeviceMemory(
        weights=parameters * FLOAT32, optimizer=2 * parameters * FLOAT32,
        gradients=parameters * FLOAT32,
        memory_state=2 * local_batch * model.n_layer * model.mem_len * model.d_model * FLOAT32,
        activations=local_batch * (model.n_layer * kept + outside),
        activations_remat=local_batch * (model.n_layer * layer_inputs + kept + temporary
                                         + outside))


def largest_local_batch(model, data, device_bytes, remat, even=False):
    """The largest local batch whose peak fits in `device_bytes` (0 if none); `even` for
    bi_data, whose rows pair forward and reversed streams."""
    fixed = device_memory(model, data, 0).peak(remat)
    per_row = device_memory(model, data, 1).peak(remat) - fixed
    if fixed + per_row > device_bytes:
        return 0
    # peak(b) is fixed + b·per_row once the activations outgrow the gradient copies, and
    # below that flat: the bound from the linear form is safe either way.
    rows = int((device_bytes - fixed) // per_row)
    while rows > 0 and device_memory(model, data, rows).peak(remat) > device_bytes:
        rows -= 1
    return rows - rows % 2 if even else rows


@dataclasses.dataclass(frozen=True)
class Plan:
    parameters: int
    train_flops_per_token: float
    global_batch_size: int
    devices: int
    local_batch_size: int
    memory: DeviceMemory
    device_bytes: int  # 0 = not given
    largest_local_batch: dict  # {"none": rows, "layer": rows} when device_bytes is given
    tokens_per_step: int
    mfu: float
    peak_tflops: float  # per device
    steps_per_day: float


def plan(run_config, global_batch_size=None, devices=1, device_memory_gb=None, mfu=0.4,
         peak_tflops=None):
    """The figures `xlnet plan` prints, for a run config and the given scale."""
    model, data, train = run_config.model, run_config.data, run_config.train
    global_batch_size = global_batch_size or train.global_batch_size
    if devices <= 0:
        raise UserError(f"--devices {devices}: must be positive")
    if global_batch_size % devices:
        raise UserError(f"--global-batch-size {global_batch_size} does not divide over "
                        f"{devices} devices: give a multiple of {devices}")
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu {mfu}: must be in (0, 1]")
    local_batch = global_batch_size // devices
    device_bytes = int(device_memory_gb * 2**30) if device_memory_gb else 0
    peak_tflops = peak_tflops or train.peak_tflops
    tokens_per_step = global_batch_size * train.grad_accum_steps * data.seq_len
    flops_per_token = train_flops_per_token(model, data)
    seconds_per_step = (tokens_per_step * flops_per_token / (devices * peak_tflops * 1e12 * mfu)
                        if peak_tflops else math.inf)
    fits = ({remat: largest_local_batch(model, data, device_bytes, remat == "layer",
                                        even=model.bi_data)
             for remat in ("none", "layer")} if device_bytes else {})
    return Plan(
        parameters=model.num_parameters, train_flops_per_token=flops_per_token,
        global_batch_size=global_batch_size, devices=devices, local_batch_size=local_batch,
        memory=device_memory(model, data, local_batch), device_bytes=device_bytes,
        largest_local_batch=fits,
        tokens_per_step=tokens_per_step, mfu=mfu, peak_tflops=peak_tflops,
        steps_per_day=SECONDS_PER_DAY / seconds_per_step)
