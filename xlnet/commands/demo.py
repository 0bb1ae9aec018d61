"""`xlnet demo`: the whole job on the standard library's docstrings (xlnet/demo_corpus.py):
tokenizer -> Beam job (2 local workers) -> pretraining with memory -> TensorBoard -> export.
Each stage is called as its command would call it, and logged as that command."""

import logging
import math
import os
import shutil
import time

from xlnet.commands import arguments
from xlnet.errors import UserError
from xlnet.output_paths import check_output_directory

logger = logging.getLogger(__name__)

NAME = "demo"
HELP = "the whole job end to end on an embedded corpus"
USES_TENSORFLOW = True
PASSES_UNKNOWN_OPTIONS = False
MARKER = ".xlnet-demo"
EXPORT_FORMATS = ("original-tf", "hf")
EVAL_FRACTION = 0.05  # of the docstrings, held out to show what was learned
SAMPLE_ROWS = 2


def configure_parser(parser):
    parser.add_argument("--workdir", default="xlnet-demo",
                        help="where the corpus, tokenizer, dataset, model and exports go "
                             "(default ./xlnet-demo; a previous demo there is replaced)")
    parser.add_argument("--config", default="tiny", help="run config (default tiny)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--max-documents", type=int, default=0,
                        help="use at most this many docstrings (default 0 = all, ~7.7k)")
    parser.add_argument("--workers", type=int, default=2,
                        help="Beam worker processes (default 2)")


def prepare_workdir(workdir):
    check_output_directory(workdir, "--workdir")
    if os.path.isdir(workdir) and os.listdir(workdir):
        if not os.path.exists(os.path.join(workdir, MARKER)):
            raise UserError(f"{workdir}: exists and is not a demo directory; pass --workdir "
                            "with a new or empty directory")
        shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    open(os.path.join(workdir, MARKER), "w").close()


def logged_losses(model_dir):
    """(step, loss) pairs the trainer wrote to TensorBoard, in step order."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    from xlnet.formats.model_dir import ModelDirectory, lm_tag

    tag = lm_tag("loss")
    accumulator = event_accumulator.EventAccumulator(
        ModelDirectory(model_dir).train_log_dir, size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["tensors"]:
        return []
    points = {event.step: float(tensor_util.make_ndarray(event.tensor_proto))
              for event in accumulator.Tensors(tag)}
    return sorted(points.items())


def run_stage(command, argv):
    """Runs a command module on `argv` in this process; returns the seconds it took."""
    logger.info("$ xlnet %s %s", command.NAME, " ".join(argv))
    started = time.time()
    status = arguments.exit_status(command.run(argv))
    if status:
        raise UserError(f"demo stage `xlnet {command.NAME}` failed with exit status {status}")
    return time.time() - started


def demo(workdir="xlnet-demo", config="tiny", steps=300, max_documents=0, workers=2):
    """Runs every stage into `workdir`; returns the summary lines it prints."""
    from xlnet.commands import export, prepare, pretrain, train_tokenizer
    from xlnet.config.run_config import load_run_config
    from xlnet.demo_corpus import standard_library_documents, write_corpus
    from xlnet.tokenizer import TOKENIZER_FILE

    workdir = os.path.abspath(workdir)
    run_config = load_run_config(config)
    # The summary compares the first and the last logged loss, so a short demo logs twice.
    log_every = max(1, min(run_config.train.log_every, steps // 2))
    prepare_workdir(workdir)
    paths = {name: os.path.join(workdir, name)
             for name in ("corpus", "tokenizer", "data", "model", "export")}
    started = time.time()
    documents = standard_library_documents(max_documents)
    corpus_glob = write_corpus(paths["corpus"], documents)
    logger.info("corpus: %d docstrings of the standard library in %s", len(documents),
                paths["corpus"])
    timings = {
        "tokenizer": run_stage(train_tokenizer, [
            "--input", corpus_glob, "--vocab-size", str(run_config.model.n_token),
            "--output", paths["tokenizer"]]),
        "prepare": run_stage(prepare, [
            "--input", corpus_glob, "--tokenizer",
            os.path.join(paths["tokenizer"], TOKENIZER_FILE), "--output", paths["data"],
            "--config", config, f"--set=data.eval_fraction={EVAL_FRACTION}",
            f"--direct_num_workers={workers}"]),
        "pretrain": run_stage(pretrain, [
            "--config", config, "--data", paths["data"], "--model-dir", paths["model"],
            "--steps", str(steps), "--log-every", str(log_every),
            f"--set=data.eval_fraction={EVAL_FRACTION}",
            f"--set=train.eval_every={max(1, steps // 3)}"]),
    }
    timings["export"] = sum(
        run_stage(export, ["--model-dir", paths["model"], "--format", fmt,
                           "--output", os.path.join(paths["export"], fmt)])
        for fmt in EXPORT_FORMATS)
    losses = logged_losses(paths["model"])
    if len(losses) < 2:
        raise UserError(f"{paths['model']}: the trainer logged fewer than two losses")
    (first_step, first_loss), (last_step, last_loss) = losses[0], losses[-1]
    learned = what_was_learned(paths["data"], paths["model"])
    return [
        f"xlnet demo finished in {time.time() - started:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})",
        f"  corpus     {paths['corpus']}  ({len(documents)} standard-library docstrings)",
        f"  tokenizer  {paths['tokenizer']}",
        f"  dataset    {paths['data']}",
        f"  model      {paths['model']}",
        f"  exports    {'  '.join(os.path.join(paths['export'], f) for f in EXPORT_FORMATS)}",
        f"  first loss {first_loss:.4f} (step {first_step})",
        f"  last loss  {last_loss:.4f} (step {last_step})",
        f"  TensorBoard: tensorboard --logdir {paths['model']} --host 127.0.0.1 --port 6006",
        *learned,
    ]


def what_was_learned(data_dir, model_dir):
    """The held-out docstrings scored with and without memory beside a unigram model of the
    same corpus, and a few of them with the model's guesses at their masked tokens."""
    import tensorflow as tf

    from pretrain.evaluator import Evaluator, token_namer, unigram_baseline
    from pretrain.input_pipeline import load_dataset_info
    from xlnet.formats.model_dir import ModelDirectory, restore_model_weights
    from xlnet.model.xlnet_lm import XLNetLM

    directory = ModelDirectory(model_dir)
    run_config = directory.run_config()
    info = load_dataset_info(data_dir, run_config)
    results = directory.read_eval()
    model = XLNetLM(run_config.model)
    restore_model_weights(model, directory.latest_checkpoint())
    evaluator = Evaluator(tf.distribute.get_strategy(), model, info, data_dir, run_config,
                          segments=run_config.train.eval_segments)
    unigram = unigram_baseline(info, data_dir, run_config, run_config.train.eval_segments)
    guessed = guessed_text(evaluator.predictions(rows=SAMPLE_ROWS),
                           token_namer(info.tokenizer["path"]))
    return [
        f"  held-out docstrings ({results['segments']} segments, {results['targets']} masked "
        f"tokens, step {results['step']}):",
        f"    perplexity with memory {results['perplexity']:.1f}, without memory "
        f"{results['perplexity_no_memory']:.1f}, unigram model of the corpus "
        f"{math.exp(unigram):.1f}",
        "  the model's guesses at masked tokens of held-out docstrings ([truth|guess]):",
        *[f"    {line}" for line in guessed],
    ]


def guessed_text(predictions, name_token):
    """Each row's pieces joined into text, a target shown as [truth|top guess]."""
    lines = []
    for row, input_ids in enumerate(predictions["input_ids"]):
        targets = {int(p): k for k, p in enumerate(predictions["positions"][row]) if p >= 0}
        pieces = []
        for position, token in enumerate(input_ids.tolist()):
            piece = name_token(token)
            if position in targets:
                guess = name_token(int(predictions["top_ids"][row, targets[position], 0]))
                piece = f"[{piece}|{guess}]"
            pieces.append(piece)
        lines.append("".join(pieces).replace("\u2581", " ").strip())
    return lines


def call(args, extra_argv):
    summary = demo(args.workdir, args.config, args.steps, args.max_documents, args.workers)
    print("\n".join(summary))
    return 0


def run(argv=None):
    return call(*arguments.parse(NAME, HELP, configure_parser, argv))
