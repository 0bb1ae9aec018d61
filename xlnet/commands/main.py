"""`xlnet`: the one entry point, and the one place that knows every stage.

Each command module holds its subcommand's arguments (`configure_parser`), calls its stage
(`call`, importing the stage only then, so `xlnet --help` stays instant) and offers `run(argv)`
for its own command line.
"""

import argparse
import logging
import os
import sys

import xlnet
from xlnet.commands import (arguments, demo, evaluate, export, plan, prepare, pretrain,
                            train_tokenizer)
from xlnet.errors import UserError
from xlnet.output_paths import filesystem_error
from xlnet.quiet_output import quiet_libraries, start_tensorflow_quietly

COMMANDS = {command.NAME: command
            for command in (train_tokenizer, prepare, pretrain, plan, evaluate, export, demo)}


def build_parser(command=None):
    parser = argparse.ArgumentParser(
        prog="xlnet", description="XLNet pretraining pipeline: tokenizer, Beam corpus job, "
        "tf.distribute trainer, TensorBoard, export.")
    parser.add_argument("--version", action="version", version=f"xlnet {xlnet.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Apache Beam's runner and worker logs at --log-level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        if name == command:
            module.configure_parser(sub)
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
        if command and COMMANDS[command].PASSES_UNKNOWN_OPTIONS:
            args, extra = parser.parse_known_args(argv)
        else:
            args, extra = parser.parse_args(argv), []
        if args.command is None:
            parser.print_help()
            return 2
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # Beam's runner and workers log every worker event at INFO; our stages log their own
        # progress. prepare hands this level on to the workers.
        if not args.verbose:
            quiet_libraries(logging.root.level)
            if COMMANDS[args.command].USES_TENSORFLOW:
                start_tensorflow_quietly()
        return arguments.exit_status(COMMANDS[args.command].call(args, extra))
    except UserError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # A full disk or a read-only mount met while writing: the user's to mend, so one line
        # (whichever library wrapped the OSError); any other exception keeps its traceback.
        message = None if debug else filesystem_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
