"""Benchmark of `xlnet prepare`: end-to-end tokens/s against the raw SentencePiece encode rate of
the same corpus (measured in the same run), and peak memory per Beam worker process.

The corpus is built at run time from the docstrings of the Python standard library (the demo's
corpus, one sentence per line); the x10 corpus repeats it ten times and uses ten times the
streams, and so on. The two largest runs also give the large-corpus rate, in which the job's
fixed start-up and shut-down cancel.

    .venv/bin/python bench/prepare.py [--scales 1,10,30] [--workers 2] [--workdir DIR] \
        [beam options]
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time

logger = logging.getLogger("bench.prepare")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xlnet.demo_corpus import document_lines, standard_library_documents  # noqa: E402


def write_corpus(directory, documents, copies, files_per_copy=4):
    os.makedirs(directory, exist_ok=True)
    chunk = (len(documents) + files_per_copy - 1) // files_per_copy
    for copy in range(copies):
        for part in range(files_per_copy):
            selected = documents[part * chunk:(part + 1) * chunk]
            with open(os.path.join(directory, f"copy{copy:02d}-part{part}.txt"), "w") as f:
                f.write("\n\n".join("\n".join(doc) for doc in selected) + "\n")
    return os.path.join(directory, "*.txt")


def raw_encode_rate(model_path, documents):
    """SentencePiece alone, one thread, on every line of one copy of the corpus: the best of
    five runs (the machine may be shared, and the baseline should not be flattered)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model_path)
    lines = [line for doc in documents for line in doc]
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        tokens = sum(len(ids) for ids in sp.encode(lines, num_threads=1))
        best = max(best, tokens / (time.perf_counter() - started))
    return best, tokens


def _descendants(pid):
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
                found.extend(children)
                queue.extend(children)
        except OSError:
            continue
    return found


def _peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_prepare(argv):
    """Runs `xlnet prepare` as a child; returns (seconds, controller MiB, worker peak MiB)."""
    command = [sys.executable, "-m", "xlnet", "prepare", *argv]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    peaks = {}
    done = threading.Event()

    def watch():
        while not done.is_set():
            for pid in [process.pid] + _descendants(process.pid):
                rss = _peak_rss_mib(pid)
                if rss is not None:
                    peaks[pid] = max(peaks.get(pid, 0), rss)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    if process.returncode:
        raise RuntimeError(f"prepare failed:\n{stderr[-3000:]}")
    controller = peaks.pop(process.pid)
    return seconds, controller, max(peaks.values(), default=0.0), stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,30",
                        help="corpus sizes to run, in multiples of x1, ascending")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streams", type=int, default=16, help="streams at scale 1")
    parser.add_argument("--base-copies", type=int, default=5,
                        help="copies of the docstrings in the x1 corpus")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--workdir", default=None)
    args, beam_argv = parser.parse_known_args(argv)  # the rest goes to Beam
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from preprocessing.train_tokenizer import train_tokenizer

    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-prepare-")
    documents = [document_lines(d) for d in standard_library_documents()]
    base_glob = write_corpus(os.path.join(workdir, "corpus-x1"), documents, args.base_copies)
    model = train_tokenizer(base_glob, args.vocab_size, os.path.join(workdir, "tokenizer"),
                            max_sentences=200_000)
    rate, tokens = raw_encode_rate(model, documents)
    logger.info("docstrings: %d documents, %d tokens (x1 = %d copies); raw SentencePiece "
                "encode: %.2f M tokens/s (1 thread, best of 5)", len(documents), tokens,
                args.base_copies, rate / 1e6)
    results = {"raw_encode_tokens_per_s_1_thread": rate, "docstring_tokens": tokens, "runs": []}
    for scale in (int(s) for s in args.scales.split(",")):
        corpus = (base_glob if scale == 1 else write_corpus(
            os.path.join(workdir, f"corpus-x{scale}"), documents, scale * args.base_copies))
        output = os.path.join(workdir, f"dataset-x{scale}")
        seconds, controller, worker, stderr = run_prepare([
            "--input", corpus, "--tokenizer", model, "--output", output, "--config", "base",
            "--set", f"model.n_token={args.vocab_size}",
            "--set", f"data.num_streams={args.streams * scale}", "--set", "data.num_passes=1",
            "--set", "train.global_batch_size=16",
            f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_processing",
            *beam_argv])
        with open(os.path.join(output, "stats.json")) as f:
            stats = json.load(f)
        end_to_end = stats["tokens_in"] / seconds
        run = {"scale": scale, "streams": args.streams * scale, "tokens": stats["tokens_in"],
               "seconds": seconds, "tokens_per_s": end_to_end,
               "fraction_of_raw_1_thread": end_to_end / rate,
               "fraction_of_raw_x_workers": end_to_end / (rate * args.workers),
               "peak_worker_mib": worker, "peak_controller_mib": controller,
               "examples": stats["passes"][0]["examples"]}
        results["runs"].append(run)
        logger.info("x%d: %d tokens in %.1f s = %.2f M tokens/s end to end (%.0f%% of the raw "
                    "1-thread rate, %.0f%% of %d x raw); peak RSS: worker %.0f MiB, controller "
                    "%.0f MiB", scale, run["tokens"], seconds, end_to_end / 1e6,
                    100 * run["fraction_of_raw_1_thread"], 100 * run["fraction_of_raw_x_workers"],
                    args.workers, worker, controller)
    first = results["runs"][0]
    for run in results["runs"][1:]:
        logger.info("peak worker memory x%d / x%d: %.2f", run["scale"], first["scale"],
                    run["peak_worker_mib"] / first["peak_worker_mib"])
    if len(results["runs"]) > 1:
        # The job's fixed cost (Beam start-up, worker processes, shut-down: ~2 s here) cancels
        # in the difference of the two largest runs: the rate a large corpus sees.
        smaller, larger = results["runs"][-2:]
        marginal = ((larger["tokens"] - smaller["tokens"])
                    / (larger["seconds"] - smaller["seconds"]))
        fixed = smaller["seconds"] - smaller["tokens"] / marginal
        results["large_corpus"] = {"tokens_per_s": marginal, "fixed_seconds": fixed,
                                   "fraction_of_raw_1_thread": marginal / rate}
        logger.info("large-corpus rate (x%d -> x%d): %.2f M tokens/s = %.0f%% of the raw "
                    "1-thread rate, plus %.1f s fixed per job", smaller["scale"],
                    larger["scale"], marginal / 1e6, 100 * marginal / rate, fixed)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
