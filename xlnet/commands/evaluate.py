"""`xlnet evaluate`: the arguments of pretrain.evaluate.evaluate, and the table it prints."""

from xlnet.commands import arguments
from xlnet.output_paths import check_output_file

NAME = "evaluate"
HELP = "score a checkpoint on a dataset's eval (or train) split, with and without memory"
USES_TENSORFLOW = True
PASSES_UNKNOWN_OPTIONS = False
ROWS = (("loss", "loss", "{:.4f}"), ("perplexity", "perplexity", "{:.2f}"),
        ("accuracy", "accuracy", "{:.4f}"))


def configure_parser(parser):
    parser.add_argument("--data", required=True, help="dataset directory from `xlnet prepare`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="a trainer's model directory: its newest "
                        "checkpoint is scored and eval.json written there")
    source.add_argument("--init-checkpoint", metavar="PATH",
                        help="an original-format checkpoint (a released model, or `xlnet "
                        "export --format original-tf`); needs --config and --output")
    parser.add_argument("--config", help="with --init-checkpoint: the run config describing "
                        "the model (must match the dataset's data section)")
    parser.add_argument("--split", default="eval", choices=("eval", "train"),
                        help="which split of the dataset (default eval)")
    parser.add_argument("--max-segments", type=int, metavar="N",
                        help="score about N segments (whole batches); default: every row's "
                        "streams once")
    parser.add_argument("--output", metavar="FILE",
                        help="where to write eval.json (default: into --model-dir)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set train.global_batch_size=4")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="build the model although its estimated memory exceeds the "
                        "machine's (host MemAvailable, or the GPU's memory)")
    parser.add_argument("--verify-data", action="store_true",
                        help="check the split's stream files' crc32c and record counts too "
                        "(sizes and first records are checked always)")


def table(results):
    """The printed summary: one line per metric, with and without memory."""
    lines = [f"{results['split']} split of {results['data']}: {results['segments']} segments, "
             f"{results['targets']} targets ({results['checkpoint']})",
             f"{'':12}{'with memory':>14}{'without':>14}"]
    for label, key, form in ROWS:
        lines.append(f"{label:12}{form.format(results[key]):>14}"
                     f"{form.format(results[key + '_no_memory']):>14}")
    return "\n".join(lines)


def call(args, extra_argv):
    """Returns eval.json's content."""
    from pretrain.evaluate import evaluate

    if args.output:
        check_output_file(args.output, "--output")
    results = evaluate(args.data, model_dir=args.model_dir,
                       init_checkpoint=args.init_checkpoint, config=args.config,
                       overrides=args.set, split=args.split, max_segments=args.max_segments,
                       output=args.output, verify_data=args.verify_data,
                       memory_check=not args.no_memory_check)
    print(table(results))
    return results


def run(argv=None):
    return call(*arguments.parse(NAME, HELP, configure_parser, argv))
