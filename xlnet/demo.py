"""`xlnet demo`: the whole job on a corpus built at run time from the Python standard library's
docstrings (every Python installation carries them; no text is shipped or downloaded).

tokenizer -> Beam job (2 local workers) -> pretraining with memory -> TensorBoard -> export.
"""

import ast
import logging
import os
import re
import shutil
import sysconfig
import time

from xlnet.errors import UserError

logger = logging.getLogger(__name__)

MARKER = ".xlnet-demo"
LOSS_TAG = "train/loss"
SKIPPED_DIRS = {"test", "tests", "site-packages", "idlelib", "lib2to3", "__pycache__"}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")


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


def standard_library_documents(max_documents=0):
    """Docstrings of the standard library's modules, classes and functions, in a fixed order."""
    root = sysconfig.get_paths()["stdlib"]
    documents = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for filename in sorted(f for f in filenames if f.endswith(".py")):
            try:
                with open(os.path.join(dirpath, filename), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef)):
                    docstring = ast.get_docstring(node)
                    if docstring and len(docstring) > 80:
                        documents.append(docstring)
                        if len(documents) == max_documents:
                            return documents
    return documents


def document_lines(docstring):
    """One sentence per line, as the corpus format asks."""
    lines = []
    for paragraph in re.split(r"\n\s*\n", docstring):
        text = " ".join(paragraph.split())
        lines.extend(s for s in SENTENCE_END.split(text) if s)
    return lines


def write_corpus(directory, documents, num_files=4):
    os.makedirs(directory)
    for index in range(num_files):
        with open(os.path.join(directory, f"docstrings-{index}.txt"), "w") as f:
            for document in documents[index::num_files]:
                f.write("\n".join(document_lines(document)) + "\n\n")
    return os.path.join(directory, "*.txt")


def prepare_workdir(workdir):
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

    points = {}
    for dirpath, _, filenames in os.walk(model_dir):
        if not any(f.startswith("events.out.tfevents") for f in filenames):
            continue
        accumulator = event_accumulator.EventAccumulator(
            dirpath, size_guidance={event_accumulator.TENSORS: 0})
        accumulator.Reload()
        if LOSS_TAG in accumulator.Tags()["tensors"]:
            for event in accumulator.Tensors(LOSS_TAG):
                points[event.step] = float(tensor_util.make_ndarray(event.tensor_proto))
    return sorted(points.items())


def run_stage(argv):
    from xlnet.commands import main as cli

    logger.info("$ xlnet %s", " ".join(argv))
    started = time.time()
    code = cli.main(argv)
    if code:
        raise UserError(f"demo stage `xlnet {argv[0]}` failed with exit status {code}")
    return time.time() - started


def run_command(args, extra_argv):
    from xlnet.config.run_config import load_run_config

    workdir = os.path.abspath(args.workdir)
    config = load_run_config(args.config)
    prepare_workdir(workdir)
    paths = {name: os.path.join(workdir, name)
             for name in ("corpus", "tokenizer", "data", "model", "export")}
    started = time.time()
    documents = standard_library_documents(args.max_documents)
    corpus_glob = write_corpus(paths["corpus"], documents)
    logger.info("corpus: %d docstrings of the standard library in %s", len(documents),
                paths["corpus"])
    timings = {
        "tokenizer": run_stage(["train-tokenizer", "--input", corpus_glob, "--vocab-size",
                                str(config.model.n_token), "--output", paths["tokenizer"]]),
        "prepare": run_stage(["prepare", "--input", corpus_glob, "--tokenizer",
                              os.path.join(paths["tokenizer"], "spiece.model"),
                              "--output", paths["data"], "--config", args.config,
                              f"--direct_num_workers={args.workers}"]),
        "pretrain": run_stage(["pretrain", "--config", args.config, "--data", paths["data"],
                               "--model-dir", paths["model"], "--steps", str(args.steps)]),
    }
    timings["export"] = sum(
        run_stage(["export", "--model-dir", paths["model"], "--format", fmt,
                   "--output", os.path.join(paths["export"], fmt)])
        for fmt in ("original-tf", "hf"))
    losses = logged_losses(paths["model"])
    if len(losses) < 2:
        raise UserError(f"{paths['model']}: the trainer logged fewer than two losses")
    (first_step, first_loss), (last_step, last_loss) = losses[0], losses[-1]
    summary = [
        f"xlnet demo finished in {time.time() - started:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})",
        f"  corpus     {paths['corpus']}  ({len(documents)} standard-library docstrings)",
        f"  tokenizer  {paths['tokenizer']}",
        f"  dataset    {paths['data']}",
        f"  model      {paths['model']}",
        f"  exports    {paths['export']}/original-tf  {paths['export']}/hf",
        f"  first loss {first_loss:.4f} (step {first_step})",
        f"  last loss  {last_loss:.4f} (step {last_step})",
        f"  TensorBoard: tensorboard --logdir {paths['model']} --host 127.0.0.1 --port 6006",
    ]
    print("\n".join(summary))
    return 0
