"""The output directory of `xlnet prepare`: refusing a different dataset, and the final
dataset_info.json, stats.json and COMPLETED (xlnet/schema.py is the contract)."""

import json
import logging

from preprocessing.beam_files import write_file
from preprocessing.stream_writer import RNG_DESCRIPTION
from preprocessing.token_store import STORE_DIR
from xlnet.errors import UserError
from xlnet.schema import (COMPLETED_FILE, EVAL, EVAL_DIR, INFO_FILE, PASS_DIR_PREFIX, STATS_FILE,
                          TRAIN, DatasetInfo)

logger = logging.getLogger(__name__)
DOCUMENT_TOKENS_LOG2 = "document_tokens_log2_"  # + k: documents of 2^k to 2^(k+1)-1 tokens
_IN_FILE = "in_file"
SKIPPED_KINDS = ("non_utf8", "over_1MiB", "nul")


def in_file(source_split, file_index, kind):
    """The count key of one input file's lines skipped (SKIPPED_KINDS), or its "tokens" and
    "unk" tokens; `source_split` tells the --input files from the --eval-input ones."""
    return f"{_IN_FILE}:{source_split}:{file_index}:{kind}"


def counts_by_file(document_stats, source_files, eval_source_files):
    """{path: {kind: count}} of every input file, from every split's counts."""
    paths = {TRAIN: source_files, EVAL: eval_source_files}
    by_file = {}
    for counts in document_stats.values():
        for key, count in counts.items():
            if key.startswith(_IN_FILE + ":"):
                _, source_split, index, kind = key.split(":")
                file_counts = by_file.setdefault(paths[source_split][int(index)], {})
                file_counts[kind] = file_counts.get(kind, 0) + count
    return by_file


def skipped_lines_by_file(by_file):
    """{path: {kind: lines}} of the files that had lines skipped."""
    return {path: {kind: counts[kind] for kind in SKIPPED_KINDS if counts.get(kind)}
            for path, counts in sorted(by_file.items())
            if any(counts.get(kind) for kind in SKIPPED_KINDS)}


def check_unknown_tokens(by_file, max_unk_fraction):
    """Refuses a corpus whose share of `<unk>` tokens exceeds `max_unk_fraction`, naming the
    file with the largest share: text the tokenizer cannot represent (another script or
    language, another tokenizer's corpus) would train a model on `<unk>`."""
    tokens = sum(counts.get("tokens", 0) for counts in by_file.values())
    unknown = sum(counts.get("unk", 0) for counts in by_file.values())
    if not tokens or unknown <= max_unk_fraction * tokens:
        return
    worst = max(by_file, key=lambda path: by_file[path].get("unk", 0)
                / max(by_file[path].get("tokens", 0), 1))
    share = by_file[worst].get("unk", 0) / max(by_file[worst].get("tokens", 0), 1)
    raise UserError(
        f"--input: {unknown / tokens:.1%} of the corpus's tokens are <unk>, above "
        f"data.max_unk_fraction={max_unk_fraction} (worst: {worst}, {share:.1%}); the text is "
        "not what the tokenizer was trained on: fix the input or the tokenizer, or raise "
        "data.max_unk_fraction")


def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _join(directory, name):
    return _filesystems().join(directory, name)


def _children(directory):
    """Names directly under `directory` (files, or the first path part of deeper files)."""
    fs = _filesystems()
    prefix = directory.rstrip("/") + "/"
    names = set()
    for metadata in fs.match([prefix + "**"])[0].metadata_list:
        names.add(metadata.path[len(prefix):].split("/", 1)[0])
    return names


def _read_json(path):
    with _filesystems().open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def check_output_dir(output_dir, identity):
    """Refuses an output directory that holds another dataset or unrelated files.

    `identity` = {"data": ..., "tokenizer_sha256": ..., "source_files": ...,
    "eval_source_files": ...}. The same
    dataset may be written again (its COMPLETED is removed first).
    """
    fs = _filesystems()
    if not fs.exists(output_dir):
        return
    names = _children(output_dir)
    info_path = _join(output_dir, INFO_FILE)
    if INFO_FILE in names:
        try:
            existing = _read_json(info_path)
        except (OSError, ValueError) as e:
            raise UserError(f"{info_path}: unreadable ({e}); remove {output_dir} or choose "
                            "another --output") from None
        _refuse_difference(output_dir, existing, identity)
    else:
        ours = {STATS_FILE, COMPLETED_FILE, STORE_DIR, EVAL_DIR}
        foreign = sorted(n for n in names if n not in ours and not n.startswith(PASS_DIR_PREFIX))
        if foreign:
            raise UserError(f"--output {output_dir}: not empty and not an xlnet dataset "
                            f"(holds {foreign[0]!r}); choose an empty or new directory")
    completed = _join(output_dir, COMPLETED_FILE)
    if fs.exists(completed):
        fs.delete([completed])


def _refuse_difference(output_dir, existing, identity):
    have = {"data": existing.get("data"),
            "tokenizer_sha256": (existing.get("tokenizer") or {}).get("sha256"),
            "source_files": existing.get("source_files"),
            "eval_source_files": existing.get("eval_source_files", [])}
    for name in ("tokenizer_sha256", "source_files", "eval_source_files"):
        if have[name] != identity[name]:
            raise UserError(f"--output {output_dir}: holds a different dataset ({name} "
                            "differs); choose another --output or delete that directory")
    for key, value in identity["data"].items():
        if (have["data"] or {}).get(key) != value:
            raise UserError(f"--output {output_dir}: holds a different dataset (data.{key} is "
                            f"{(have['data'] or {}).get(key)!r} there, {value!r} now); choose "
                            "another --output or delete that directory")


def _remove_stale_stream_files(output_dir, listed):
    """Deletes stream files that this run did not write (an earlier, killed run's)."""
    fs = _filesystems()
    prefix = output_dir.rstrip("/") + "/"
    patterns = [prefix + PASS_DIR_PREFIX + "*/*", f"{prefix}{EVAL_DIR}/{PASS_DIR_PREFIX}*/*"]
    stale = [m.path for result in fs.match(patterns) for m in result.metadata_list
             if m.path[len(prefix):] not in listed]
    if stale:
        fs.delete(stale)


def _remove_token_store(output_dir):
    fs = _filesystems()
    store = _join(output_dir, STORE_DIR)
    parked = [m.path for m in fs.match([store.rstrip("/") + "/*"])[0].metadata_list]
    if parked:
        fs.delete(parked)
    if fs.exists(store):
        fs.delete([store])


def summarize(file_results, document_stats, num_passes, seq_len):
    """stats.json content of one split from its per-file results (pass, entry, stats) and its
    document counts."""
    passes = []
    for pass_index in range(num_passes):
        results = [(entry, stats) for p, entry, stats in file_results if p == pass_index]
        forward = [stats for entry, stats in results if not entry["reverse"]]
        examples = sum(stats["examples"] for _, stats in results)
        dropped = [stats["stream_tokens"] - stats["covered_tokens"] for stats in forward]
        spans = {}
        for _, stats in results:
            for length, count in stats["span_lengths"].items():
                spans[length] = spans.get(length, 0) + count
        label_true_b = sum(stats["label_true_b"] for _, stats in results)
        masked = sum(stats["masked"] for _, stats in results)
        passes.append({
            "pass": pass_index,
            "examples": examples,
            "tokens_written": sum(stats["covered_tokens"] for stats in forward),
            "tokens_dropped_at_stream_ends": sum(dropped),
            "most_tokens_dropped_in_one_stream": max(dropped, default=0),
            "masked_positions": masked,
            "masked_fraction": masked / max(examples * seq_len, 1),
            "label_true_b": label_true_b,
            "label_true_b_fraction": label_true_b / max(examples, 1),
            "span_lengths": {str(k): spans[k] for k in sorted(spans)},
        })
    forward_tokens = sorted(stats["stream_tokens"] for p, entry, stats in file_results
                            if p == 0 and not entry["reverse"])
    log2_buckets = sorted(int(key[len(DOCUMENT_TOKENS_LOG2):]) for key in document_stats
                          if key.startswith(DOCUMENT_TOKENS_LOG2))
    return {
        "documents": document_stats.get("documents", 0),
        "empty_documents": document_stats.get("empty_documents", 0),
        "lines": document_stats.get("lines", 0),
        "skipped_lines": {"non_utf8": document_stats.get("skipped_lines_non_utf8", 0),
                          "over_1MiB": document_stats.get("skipped_lines_over_1MiB", 0),
                          "nul": document_stats.get("skipped_lines_nul", 0)},
        "tokens_in": document_stats.get("tokens", 0),
        # documents by length: key k counts those of 2^k to 2^(k+1)-1 tokens
        "document_tokens_log2": {str(k): document_stats[f"{DOCUMENT_TOKENS_LOG2}{k}"]
                                 for k in log2_buckets},
        "stream_tokens": {"min": forward_tokens[0], "max": forward_tokens[-1],
                          "total": sum(forward_tokens)} if forward_tokens else {},
        "passes": passes,
    }


def _split_passes(file_results, split, num_passes, seed):
    passes = []
    for pass_index in range(num_passes):
        entries = sorted((entry for s, p, entry, _ in file_results
                          if s == split and p == pass_index), key=lambda e: e["stream"])
        passes.append({"pass": pass_index, "seed": seed, "rng": RNG_DESCRIPTION,
                       "streams": entries})
    return passes


class DatasetFinalizer:
    """Called once, after every stream file exists: writes the metadata, COMPLETED last."""

    def __init__(self, output_dir, data_config, tokenizer_description, source_files,
                 eval_source_files=()):
        self.output_dir = output_dir
        self.data_config = data_config
        self.tokenizer_description = tokenizer_description
        self.source_files = source_files
        self.eval_source_files = list(eval_source_files)

    def __call__(self, file_results, document_stats):
        """`file_results`: (split, pass, entry, stats) per file; `document_stats`: {split:
        counts}. Returns the stats.json content (the eval split's under "eval")."""
        config = self.data_config

        def split_results(split):
            return [(p, entry, stats) for s, p, entry, stats in file_results if s == split]

        stats = summarize(split_results(TRAIN), document_stats.get(TRAIN, {}), config.num_passes,
                          config.seq_len)
        stats["skipped_lines_by_file"] = skipped_lines_by_file(counts_by_file(
            document_stats, self.source_files, self.eval_source_files))
        passes = _split_passes(file_results, TRAIN, config.num_passes, config.seed)
        has_eval = any(s == EVAL for s, *_ in file_results)
        eval_passes = _split_passes(file_results, EVAL, 1, config.seed) if has_eval else []
        if has_eval:
            stats["eval"] = summarize(split_results(EVAL), document_stats.get(EVAL, {}), 1,
                                      config.seq_len)
        info = DatasetInfo(
            data=config.get_config(), tokenizer=self.tokenizer_description, passes=passes,
            num_examples=sum(e["examples"] for p in passes for e in p["streams"]),
            source_files=self.source_files, eval_passes=eval_passes,
            eval_num_examples=sum(e["examples"] for p in eval_passes for e in p["streams"]),
            eval_source_files=self.eval_source_files)
        _remove_stale_stream_files(self.output_dir, {e["file"] for p in passes + eval_passes
                                                     for e in p["streams"]})
        _remove_token_store(self.output_dir)
        write_file(_join(self.output_dir, STATS_FILE), json.dumps(stats, indent=2) + "\n")
        write_file(_join(self.output_dir, INFO_FILE), info.to_json())
        write_file(_join(self.output_dir, COMPLETED_FILE), "")
        logger.info("wrote %s: %d examples (%d in the eval split) in %d files", self.output_dir,
                    info.num_examples, info.eval_num_examples, len(file_results))
        return stats
