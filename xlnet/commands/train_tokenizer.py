"""`xlnet train-tokenizer`: the arguments of preprocessing.train_tokenizer.train_tokenizer."""

from xlnet.commands import arguments

NAME = "train-tokenizer"
HELP = "train a SentencePiece model with the original special ids"
USES_TENSORFLOW = False
PASSES_UNKNOWN_OPTIONS = False


def configure_parser(parser):
    parser.add_argument("--input", required=True, help="glob of text files, one sentence a line")
    parser.add_argument("--vocab-size", type=int, required=True,
                        help="pieces in the model; must equal model.n_token (32000 original)")
    parser.add_argument("--output", required=True, help="directory for spiece.model")
    parser.add_argument("--uncased", action="store_true",
                        help="lower-case the text (set data.uncased=true to match)")
    parser.add_argument("--max-sentences", type=int, default=10_000_000,
                        help="lines sampled from the corpus for training (default 10M)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--character-coverage", type=float, default=0.99995,
                        help="SentencePiece character_coverage (original 0.99995)")


def call(args, extra_argv):
    """Returns the path of the written spiece.model."""
    from preprocessing.train_tokenizer import train_tokenizer

    return train_tokenizer(args.input, args.vocab_size, args.output, uncased=args.uncased,
                           max_sentences=args.max_sentences, seed=args.seed,
                           character_coverage=args.character_coverage)


def run(argv=None):
    return call(*arguments.parse(NAME, HELP, configure_parser, argv))
