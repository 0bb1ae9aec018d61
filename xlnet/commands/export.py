"""`xlnet export`: the arguments of xlnet.formats.export.export."""

from xlnet.commands import arguments
from xlnet.output_paths import check_output_directory, translate_filesystem_errors
from xlnet.formats.export import FORMATS, RELEASED_NUM_PREDICT, RELEASED_SEQ_LEN

NAME = "export"
HELP = "write trained weights for the original code, HF or TF Serving"
USES_TENSORFLOW = True
PASSES_UNKNOWN_OPTIONS = False


def configure_parser(parser):
    parser.add_argument("--model-dir", required=True,
                        help="a trainer's model directory (run_config.yaml + checkpoints), or "
                             "an original release directory (xlnet_config.json + "
                             "xlnet_model.ckpt.*)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="original-tf: the original TF1 variable names; hf: transformers "
                             "config.json + model.safetensors; saved-model: TF Serving")
    parser.add_argument("--output", required=True,
                        help="directory to create (must not exist or be empty)")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint prefix inside --model-dir (default: the newest)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="saved-model: tokens per example (default: the run's "
                             f"data.seq_len, else {RELEASED_SEQ_LEN})")
    parser.add_argument("--num-predict", type=int, default=None,
                        help="saved-model: target rows per example (default: the run's "
                             f"data.num_predict, else {RELEASED_NUM_PREDICT})")


def call(args, extra_argv):
    """Returns the output directory."""
    from xlnet.formats.export import export

    check_output_directory(args.output, "--output")
    with translate_filesystem_errors("--output", args.output):
        return export(args.model_dir, args.format, args.output, checkpoint=args.checkpoint,
                      seq_len=args.seq_len, num_predict=args.num_predict)


def run(argv=None):
    return call(*arguments.parse(NAME, HELP, configure_parser, argv))
