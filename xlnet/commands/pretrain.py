"""`xlnet pretrain`: the arguments of pretrain.train.pretrain."""

from xlnet.commands import arguments
from xlnet.errors import UserError

NAME = "pretrain"
HELP = "train XLNet with tf.distribute, memory and TensorBoard"
USES_TENSORFLOW = True
PASSES_UNKNOWN_OPTIONS = False
# Command-line flags that are shorthands for `--set train.<key>=<value>`.
TRAIN_FLAGS = ("steps", "strategy", "log_every", "checkpoint_every", "seed")


def configure_parser(parser):
    parser.add_argument("--config", required=True,
                        help="run config: a YAML path or a name in configs/ (tiny, base, large)")
    parser.add_argument("--data", required=True, help="dataset directory from `xlnet prepare`")
    parser.add_argument("--model-dir", required=True,
                        help="checkpoints, TensorBoard logs and the run config; an existing "
                        "one is resumed from its newest good checkpoint")
    parser.add_argument("--init-checkpoint", metavar="PATH",
                        help="start a new run from an original-format checkpoint (a released "
                        "model's xlnet_model.ckpt, `xlnet export --format original-tf`, or a "
                        "directory holding one); ignored when --model-dir has checkpoints")
    parser.add_argument("--steps", type=int, help="train.steps")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multi_worker", "tpu"),
                        help="train.strategy (multi_worker reads TF_CONFIG or Slurm)")
    parser.add_argument("--tpu", help="TPU name or address for --strategy tpu")
    parser.add_argument("--log-every", type=int, help="train.log_every")
    parser.add_argument("--checkpoint-every", type=int, help="train.checkpoint_every")
    parser.add_argument("--seed", type=int, help="train.seed")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume although the train section differs from the model dir's "
                        "(e.g. another --steps or learning rate); the change is logged and "
                        "kept in run_config.history.yaml")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="start although the estimated memory of the step (`xlnet plan`) "
                        "exceeds the machine's (host MemAvailable, or the GPU's memory)")
    parser.add_argument("--profile-steps", metavar="A,B",
                        help="write a TensorBoard profile of steps A to B")
    parser.add_argument("--verify-data", action="store_true",
                        help="check every stream file's crc32c and record count at start (done "
                        "anyway on the model dir's first run on the dataset; sizes and first "
                        "records are checked always)")


def parse_profile_steps(text):
    if not text:
        return None
    try:
        first, last = (int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--profile-steps {text!r}: expected two step numbers A,B") from None
    return first, last


def call(args, extra_argv):
    """Returns the exit status: 0, or 143 after a SIGTERM (saved)."""
    from pretrain.train import pretrain

    overrides = list(args.set)
    for name in TRAIN_FLAGS:
        value = getattr(args, name)
        if value is not None:
            overrides.append(f"train.{name}={value}")
    return pretrain(args.config, args.data, args.model_dir, overrides=overrides, tpu=args.tpu,
                    init_checkpoint=args.init_checkpoint,
                    profile_steps=parse_profile_steps(args.profile_steps),
                    verify_data=args.verify_data, allow_config_change=args.allow_config_change,
                    memory_check=not args.no_memory_check)


def run(argv=None):
    return call(*arguments.parse(NAME, HELP, configure_parser, argv))
