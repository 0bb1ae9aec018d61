"""`xlnet prepare`: the arguments of preprocessing.prepare.prepare; options it does not know
go to Apache Beam."""

from xlnet.commands import arguments

NAME = "prepare"
HELP = "the Beam job: text -> streams, span masks, permutations -> TFRecords"
USES_TENSORFLOW = False
PASSES_UNKNOWN_OPTIONS = True


def configure_parser(parser):
    parser.add_argument("--input", required=True,
                        help="glob of text files (one sentence per line, a blank line ends a "
                        "document; .gz read as gzip); local, gs:// or s3://")
    parser.add_argument("--tokenizer", required=True,
                        help="SentencePiece model (from `xlnet train-tokenizer` or the released "
                        "spiece.model)")
    parser.add_argument("--output", required=True, help="dataset directory to write")
    parser.add_argument("--eval-input", metavar="GLOB",
                        help="a separate corpus for the eval split (instead of holding out "
                        "data.eval_fraction of --input's documents)")
    parser.add_argument("--config", required=True,
                        help="run config (its data section and model.n_token are used)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set data.num_streams=16")
    parser.epilog = ("Other options go to Apache Beam, e.g. --runner=DataflowRunner, "
                     "--direct_num_workers=N; one Beam does not know is refused.")


def call(args, extra_argv):
    """Returns the stats.json content."""
    from preprocessing.prepare import prepare

    return prepare(args.input, args.tokenizer, args.output, args.config, overrides=args.set,
                   beam_argv=extra_argv, eval_input_glob=args.eval_input)


def run(argv=None):
    """`run(["--input", ..., "--direct_num_workers=2"])` -> the stats.json content."""
    return call(*arguments.parse(NAME, HELP, configure_parser, argv, passes_unknown=True))
