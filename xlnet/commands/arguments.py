"""What every subcommand's `run(argv)` shares: a parser of its own, as `xlnet COMMAND` has."""

import argparse


def parse(name, help_text, configure_parser, argv, passes_unknown=False):
    """(args, the argv left over for Beam) of one subcommand's command line."""
    parser = argparse.ArgumentParser(prog=f"xlnet {name}", description=help_text)
    configure_parser(parser)
    if passes_unknown:
        return parser.parse_known_args(argv)
    return parser.parse_args(argv), []


def exit_status(result):
    """A stage's int result is its exit status (pretrain's 143 after a SIGTERM); any other
    result (a path, the stats) means success."""
    return result if isinstance(result, int) else 0
