"""`xlnet`: the one entry point, and the one place that knows every stage.

Each stage module provides `configure_parser(parser)` and `run_command(args, extra_argv)`;
modules are imported only when their subcommand runs, so `xlnet --help` is instant.
"""

import argparse
import importlib
import logging
import os
import sys

from xlnet.errors import UserError

COMMANDS = {
    "train-tokenizer": ("preprocessing.train_tokenizer",
                        "train a SentencePiece model with the original special ids"),
    "prepare": ("preprocessing.prepare",
                "the Beam job: text -> streams, span masks, permutations -> TFRecords"),
    "pretrain": ("pretrain.train", "train XLNet with tf.distribute, memory and TensorBoard"),
    "export": ("xlnet.export", "write trained weights for the original code, HF or TF Serving"),
    "demo": ("xlnet.demo", "the whole job end to end on an embedded corpus"),
}
# Only these subcommands hand unknown options on (to Apache Beam).
PASSES_UNKNOWN_OPTIONS = {"prepare"}


def build_parser(command=None):
    parser = argparse.ArgumentParser(
        prog="xlnet", description="XLNet pretraining pipeline: tokenizer, Beam corpus job, "
        "tf.distribute trainer, TensorBoard, export.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).configure_parser(sub)
    return parser


def _command_in(argv):
    return next((a for a in argv if a in COMMANDS), None)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = _command_in(argv)
    debug = "--debug" in argv
    try:
        parser = build_parser(command)
        if command in PASSES_UNKNOWN_OPTIONS:
            args, extra = parser.parse_known_args(argv)
        else:
            args, extra = parser.parse_args(argv), []
        if args.command is None:
            parser.print_help()
            return 2
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # Beam's runner logs every worker event at INFO; our stages log their own progress.
        logging.getLogger("apache_beam").setLevel(max(logging.WARNING, logging.root.level))
        module = importlib.import_module(COMMANDS[args.command][0])
        return module.run_command(args, extra) or 0
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
