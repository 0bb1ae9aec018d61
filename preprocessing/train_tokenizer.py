"""`xlnet train-tokenizer`: a SentencePiece unigram model with the original special ids.

<unk> 0, <s> 1, </s> 2, then the control symbols <cls> 3 <sep> 4 <pad> 5 <mask> 6 <eod> 7 and
the user-defined <eop> 8 followed by the original's punctuation symbols (original-xlnet.md §1.1).
The text is normalised as `xlnet prepare` will normalise it (§1.2). A bounded, seeded reservoir
sample of the lines keeps memory fixed for any corpus size and makes the model a function of the
inputs and the seed.
"""

import contextlib
import io
import logging
import math
import re

import numpy as np
import sentencepiece as spm

from preprocessing.beam_files import write_file
from preprocessing.corpus_reader import iter_text_lines, match_input_files
from xlnet.errors import UserError
from xlnet.output_paths import check_output_directory, translate_filesystem_errors
from xlnet.progress import Progress, megabytes
from xlnet.quiet_output import is_harmless, stderr_filtered
from xlnet.schema import SPECIAL_PIECES
from xlnet.tokenizer import TOKENIZER_FILE, Tokenizer, normalize_text

logger = logging.getLogger(__name__)

_LINES_PER_UPDATE = 10_000

CONTROL_SYMBOLS = SPECIAL_PIECES[3:8]  # <cls> <sep> <pad> <mask> <eod>
USER_DEFINED_SYMBOLS = ("<eop>", ".", "(", ")", '"', "-", "\u2013", "\u00a3", "\u20ac")


def sample_sentences(files, max_sentences, seed, uncased):
    """A uniform sample of at most `max_sentences` normalised non-blank lines of the (path,
    size) files, and the number of undecodable, over-long or NUL-holding lines skipped."""
    rng = np.random.Generator(np.random.PCG64(seed))
    reservoir, seen, skipped, lines = [], 0, 0, 0
    with Progress(logger, "sampling lines", total=sum(size for _, size in files),
                  describe=megabytes) as progress:
        files_read = 0
        for path, size in files:
            for offset, line in iter_text_lines(path):
                lines += 1
                if lines % _LINES_PER_UPDATE == 0:
                    progress.update(files_read + min(offset, size), f"{lines:,} lines")
                if line is None:
                    skipped += 1
                    continue
                text = normalize_text(line, uncased)
                if not text:
                    continue
                if len(reservoir) < max_sentences:
                    reservoir.append(text)
                else:
                    slot = int(rng.integers(0, seen + 1))
                    if slot < max_sentences:
                        reservoir[slot] = text
                seen += 1
            files_read += size
    return reservoir, seen, skipped


def train_tokenizer(input_glob, vocab_size, output_dir, uncased=False, max_sentences=10_000_000,
                    seed=0, character_coverage=0.99995):
    """Trains and writes `output_dir/spiece.model`; returns its path."""
    from apache_beam.io.filesystems import FileSystems

    if max_sentences <= 0:
        raise UserError(f"--max-sentences: must be positive, got {max_sentences}")
    if vocab_size <= len(SPECIAL_PIECES) + len(USER_DEFINED_SYMBOLS) - 1:
        raise UserError(f"--vocab-size: {vocab_size} does not leave room beyond the "
                        f"{len(SPECIAL_PIECES) + len(USER_DEFINED_SYMBOLS) - 1} special pieces")
    check_output_directory(output_dir, "--output")
    sentences, seen, skipped = sample_sentences(match_input_files(input_glob), max_sentences,
                                                seed, uncased)
    if not sentences:
        raise UserError(f"--input {input_glob}: no text lines to train on")
    logger.info("training a %d-piece unigram model on %d of %d lines (%d lines skipped: not "
                "UTF-8, over 1 MiB or holding a NUL byte)", vocab_size, len(sentences), seen,
                skipped)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    training = _TrainingProgress(vocab_size)
    try:
        with stderr_filtered(training.keep) as terminal, training.shown_on(terminal):
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model, model_type="unigram",
                vocab_size=vocab_size, character_coverage=character_coverage,
                unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                control_symbols=list(CONTROL_SYMBOLS),
                user_defined_symbols=list(USER_DEFINED_SYMBOLS),
                input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
                minloglevel=0)
    except RuntimeError as e:
        # The last line reads "INTERNAL: file.cc(744) [check] Vocabulary size too high (300).
        # Please set it to a value <= 186.": keep what follows the failed check, whole.
        reason = str(e).strip().splitlines()[-1].split("] ", 1)[-1]
        raise UserError(f"--vocab-size {vocab_size}: SentencePiece could not train "
                        f"({reason}); lower --vocab-size or give more text") from None
    Tokenizer(model.getvalue(), path="trained model")  # checks the special ids
    path = FileSystems.join(output_dir, TOKENIZER_FILE)
    with translate_filesystem_errors("--output", output_dir):
        write_file(path, model.getvalue())
    logger.info("wrote %s", path)
    return path


class _TrainingProgress:
    """SentencePiece's INFO lines read into a progress bar, and kept out of the output unless
    this module logs at DEBUG; its warnings are dropped (as minloglevel=2 did), its errors and
    every line not its own pass. Unigram training starts from the seed pieces, then prunes by a
    quarter per EM round until at most 1.1 x the vocabulary is left: progress is that descent,
    on a log scale."""

    _SEVERITY = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ \S+\] ")
    _SEED = re.compile(r"Initialized (\d+) seed pieces")
    _ROUND = re.compile(r"EM sub_iter=\d+ size=(\d+)")

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size
        self.target = 1.1 * vocab_size
        self.verbose = logger.isEnabledFor(logging.DEBUG)
        self.progress = None
        self.seed_pieces = None
        self._in_spec = False  # the trainer spec follows its first line, unprefixed

    @contextlib.contextmanager
    def shown_on(self, stream):
        self.stream = stream
        yield
        if self.progress:  # not reached when training fails: the error says why
            self.progress.update(1000, f"{self.vocab_size:,} pieces, from "
                                       f"{self.seed_pieces:,} seeds")
            self.progress.finish()

    def keep(self, line):
        severity = self._SEVERITY.match(line)
        if not severity:
            return self.verbose or not (self._in_spec or is_harmless(line))
        self._in_spec = "Starts training with" in line
        message = line[severity.end():]
        if seed := self._SEED.search(message):
            self.seed_pieces = int(seed[1])
            self.progress = Progress(logger, "training the tokenizer", total=1000,
                                     describe=None, stream=self.stream).__enter__()
        elif (size := self._ROUND.search(message)) and self.progress:
            pieces = int(size[1])
            descent = math.log(self.seed_pieces / pieces) / math.log(
                max(self.seed_pieces / self.target, 1.0 + 1e-9))
            self.progress.update(min(round(1000 * descent), 1000),
                                 f"{pieces:,} pieces, from {self.seed_pieces:,} seeds")
        return self.verbose or severity[1] in "EF"
