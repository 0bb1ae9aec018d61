"""`xlnet plan`: the arguments of pretrain.plan.plan, and its report."""

from xlnet.commands import arguments

NAME = "plan"
HELP = "size a run: parameters, FLOPs per token, memory per device, the batch that fits, steps/day"
USES_TENSORFLOW = False
PASSES_UNKNOWN_OPTIONS = False


def configure_parser(parser):
    parser.add_argument("--config", required=True,
                        help="run config: a YAML path or a name in configs/ (tiny, base, large)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--global-batch-size", type=int,
                        help="rows per step over all devices (default train.global_batch_size)")
    parser.add_argument("--devices", type=int, default=1, help="devices (replicas), default 1")
    parser.add_argument("--device-memory", type=float, metavar="GB",
                        help="memory per device in GiB: also print the largest local batch "
                        "that fits, with and without train.remat=layer")
    parser.add_argument("--mfu", type=float, default=0.4,
                        help="model FLOPs utilisation assumed for steps/day (default 0.4)")
    parser.add_argument("--peak-tflops", type=float,
                        help="peak TFLOP/s per device (default train.peak_tflops)")


def _mib(n):
    return f"{n / 2**20:,.0f} MiB"


def report(p, remat):
    """The lines `xlnet plan` prints for a pretrain.plan.Plan."""
    m = p.memory
    lines = [
        f"parameters: {p.parameters:,}",
        f"training FLOPs per token: {p.train_flops_per_token / 1e9:.3f} GFLOP",
        f"global batch {p.global_batch_size} over {p.devices} devices: local batch "
        f"{p.local_batch_size}, {p.tokens_per_step:,} tokens per step",
        "memory per device:",
        f"  weights {_mib(m.weights)}, optimizer slots {_mib(m.optimizer)}, gradients "
        f"{_mib(m.gradients)} per copy",
        f"  memory state (in and out) {_mib(m.memory_state)}; a save copies the device's rows, "
        f"{_mib(m.memory_state // 2)}, to the host for its worker's memory shard",
        f"  activations {_mib(m.activations)} (train.remat=layer: {_mib(m.activations_remat)})",
        f"  step peak {_mib(m.peak(False))} (train.remat=layer: {_mib(m.peak(True))}); "
        f"this config: train.remat={'layer' if remat else 'none'}",
    ]
    if p.device_bytes:
        fits = p.largest_local_batch
        lines.append(f"largest local batch in {p.device_bytes / 2**30:g} GiB: {fits['none']} "
                     f"(train.remat=layer: {fits['layer']})")
        if p.local_batch_size > fits["layer" if remat else "none"]:
            lines.append(f"  local batch {p.local_batch_size} does not fit: use more devices, "
                         "train.grad_accum_steps or train.remat=layer")
    if p.peak_tflops:
        lines.append(f"steps/day at {p.mfu:.0%} MFU of {p.peak_tflops:g} TFLOP/s per device: "
                     f"{p.steps_per_day:,.0f} ({p.steps_per_day * p.tokens_per_step / 1e9:,.1f} "
                     "B tokens/day)")
    else:
        lines.append("steps/day: give --peak-tflops (the device's peak TFLOP/s)")
    return lines


def call(args, extra_argv):
    """Prints the plan; returns the pretrain.plan.Plan."""
    from pretrain.plan import plan
    from xlnet.config.run_config import load_run_config

    run_config = load_run_config(args.config, args.set)
    result = plan(run_config, global_batch_size=args.global_batch_size, devices=args.devices,
                  device_memory_gb=args.device_memory, mfu=args.mfu,
                  peak_tflops=args.peak_tflops)
    print("\n".join(report(result, run_config.train.remat == "layer")))
    return result


def run(argv=None):
    """`run(["--config", "base", "--devices", "8"])` -> the pretrain.plan.Plan."""
    return call(*arguments.parse(NAME, HELP, configure_parser, argv))
