"""The corpus job (`xlnet prepare`): text files -> a dataset directory (xlnet/schema.py).

Read and tokenize file ranges (tokens parked in OUTPUT/.tokens) -> balance blocks of documents
over streams -> per stream and pass: segments, span masks, permutation ranks (and the reversed copy
for bi_data) -> stream files -> stats.json, dataset_info.json, COMPLETED. Without --runner in
Beam's options it runs locally (FnApiRunner) with one worker process per core.

Beam is imported only when the job runs: importing it installs a root logging handler, which
would make the command line's logging set-up a no-op.
"""

import contextlib
import importlib
import json
import logging
import os
import re
import shutil
import time

from preprocessing.beam_files import load_tokenizer
from preprocessing.corpus_reader import match_input_files, plan_ranges
from preprocessing.dataset_dir import DatasetFinalizer, check_output_dir
from preprocessing.job_progress import JobProgress, expected_stream_files
from preprocessing.stream_builder import block_tokens_for
from xlnet.config.data_config import DataConfig
from xlnet.config.run_config import load_run_config
from xlnet.errors import UserError
from xlnet.output_paths import check_output_directory, translate_filesystem_errors
from xlnet.quiet_output import harmless_stderr_lines_dropped
from xlnet.schema import EVAL, STATS_FILE, TRAIN

logger = logging.getLogger(__name__)
_WHILE_RUNNING = re.compile(r"\s*\[while running '[^']*'\]")
_USER_ERROR_IN_WORKER = re.compile(r"UserError: (.+?)(?: \[while running '[^']*'\])?$", re.M)


def _local_to_absolute(path):
    return path if "://" in path else os.path.abspath(path)


def _option_given(beam_argv, name):
    return any(arg == name or arg.startswith(name + "=") for arg in beam_argv)


# Beam resolves short names only for its built-in runners; the DaskRunner ships with Beam but
# is reachable only by its module path, and its module does not import without dask.distributed.
# short name -> (class path, this package's extra that installs what it needs, that module)
_EXTRA_RUNNERS = {"DaskRunner": ("apache_beam.runners.dask.dask_runner.DaskRunner", "dask",
                                 "dask.distributed")}


def _known_runners():
    from apache_beam.options.pipeline_options import StandardOptions

    known = {path.rsplit(".", 1)[-1]: (path, None, None)
             for path in StandardOptions.ALL_KNOWN_RUNNERS}
    known.update(_EXTRA_RUNNERS)
    return known


def resolve_runner(name):
    """What to give Beam as --runner: Beam's own short names as given (Beam reads them in any
    case, "Runner" optional), the class path for the other runners Beam ships, a class path
    once it imports. UserError for a name no runner has or a runner that does not import."""
    known = _known_runners()
    choices = f"give one of {', '.join(sorted(known))} or a runner's full class path"
    by_lower = {short.lower(): entry for short, entry in known.items()}
    path, extra, needs = by_lower.get(name.lower(),
                                      by_lower.get(name.lower() + "runner", (name, None, None)))
    if "." not in path:
        raise UserError(f"--runner={name} is not a Beam runner: {choices}")
    module, _, class_name = path.rpartition(".")
    try:
        if needs:
            importlib.import_module(needs)
        runner_class = getattr(importlib.import_module(module), class_name, None)
    except ImportError as e:
        if extra:
            raise UserError(f"--runner={name} needs {needs}: pip install "
                            f"'xlnet-pipeline[{extra}]'") from None
        raise UserError(f"--runner={name} does not import ({e}): {choices}") from None
    if runner_class is None:
        raise UserError(f"--runner={name}: {module} has no {class_name}: {choices}")
    return path if extra or "." in name else name


def _refuse_unknown_options(options, beam_argv):
    """Refuses an argument that neither `xlnet prepare` nor any Beam options class defines
    (the runner's own are imported by resolve_runner first): Beam would only log "Discarding
    unparseable args" and run with its defaults, e.g. 8 streams for a mistyped --num-streams."""
    parsers = []  # the public hook hands over Beam's parser of all its options classes
    options.get_all_options(add_extra_args_fn=parsers.append)
    unknown = parsers[0].parse_known_args(beam_argv)[1]
    if not unknown:
        return
    name = next((arg for arg in unknown if arg.startswith("-")), unknown[0]).split("=", 1)[0]
    key = name.lstrip("-").replace("-", "_")
    hint = (f"set it with --set data.{key}=VALUE" if key in DataConfig.__dataclass_fields__
            else "see `xlnet prepare --help` and Beam's pipeline options")
    raise UserError(f"{name}: neither an option of `xlnet prepare` nor one Beam knows; {hint}")


def beam_options(beam_argv):
    """PipelineOptions from Beam's arguments, --runner checked by resolve_runner.

    Without --runner: the local FnApiRunner (what the DirectRunner runs when it cannot fetch
    Prism, without the download attempt), one worker process per core. Without
    --default_sdk_harness_log_level the workers log at the level of this process's
    `apache_beam` logger (WARNING unless `xlnet --verbose`): at INFO they log every control
    channel they open and close.
    """
    from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions,
                                                      StandardOptions)

    beam_argv = list(beam_argv)
    level = logging.getLogger("apache_beam").getEffectiveLevel()
    if not _option_given(beam_argv, "--default_sdk_harness_log_level") and level > logging.INFO:
        beam_argv.append(f"--default_sdk_harness_log_level={logging.getLevelName(level)}")
    options = PipelineOptions(beam_argv)
    standard = options.view_as(StandardOptions)
    standard.runner = resolve_runner(standard.runner or "FnApiRunner")
    _refuse_unknown_options(options, beam_argv)
    direct = options.view_as(DirectOptions)
    if not _option_given(beam_argv, "--direct_num_workers"):
        direct.direct_num_workers = os.cpu_count() or 1
    if not _option_given(beam_argv, "--direct_running_mode") and direct.direct_num_workers > 1:
        direct.direct_running_mode = "multi_processing"
    return options


def build_pipeline(pipeline, split_ranges, block_tokens, data_config, tokenizer, output_dir,
                   source_files, eval_source_files):
    """`split_ranges`: (source split, FileRanges) in corpus order, the eval corpus's last."""
    from apache_beam import Flatten

    from preprocessing.transforms import (AssignStreams, FinalizeDataset, SumCounts,
                                          TokenizeRanges, WriteStreams)

    range_results = pipeline | "TokenizeRanges" >> TokenizeRanges(
        split_ranges, tokenizer.path, tokenizer.sha256, data_config, block_tokens, output_dir)
    document_stats = range_results | "DocumentStats" >> SumCounts()
    splits = [TRAIN] + ([EVAL] if data_config.eval_fraction or eval_source_files else [])
    files = []
    for split in splits:
        name = split.capitalize()
        num_streams = data_config.num_streams if split == TRAIN else data_config.eval_streams
        # The train split's assignment checks the whole corpus's <unk> share first.
        unk_check = ((data_config.max_unk_fraction, source_files, eval_source_files)
                     if split == TRAIN else None)
        files.append(range_results
                     | f"Assign{name}Streams" >> AssignStreams(output_dir, split, num_streams,
                                                               data_config.seq_len, unk_check)
                     | f"Write{name}Streams" >> WriteStreams(data_config, tokenizer.path,
                                                             tokenizer.sha256, output_dir, split))
    finalizer = DatasetFinalizer(output_dir, data_config, tokenizer.describe(), source_files,
                                 eval_source_files)
    return ((files | "AllFiles" >> Flatten(), document_stats)
            | "Finalize" >> FinalizeDataset(finalizer))


def _runner(options):
    """The local FnApiRunner built as the DirectRunner builds it, with the pipeline options in
    its provisioning info: named by a string it hands its workers no options, so they would
    ignore --default_sdk_harness_log_level. None for any other runner (Beam builds those)."""
    from apache_beam.options.pipeline_options import StandardOptions

    if options.view_as(StandardOptions).runner != "FnApiRunner":
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    # Only the options set: the full set holds flags the workers cannot parse back (warned).
    encoded = JobServiceHandle.encode_pipeline_options(
        options.get_all_options(drop_default=True))
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def _run_pipeline(options, build):
    import apache_beam as beam

    quiet = logging.getLogger("apache_beam").getEffectiveLevel() > logging.INFO
    try:
        pipeline = beam.Pipeline(runner=_runner(options), options=options)
        try:
            build(pipeline)
        except BaseException:  # run() removes Beam's temporary directory; we never ran
            shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
            raise
        # Local worker processes write their first lines to the stderr they inherit.
        with harmless_stderr_lines_dropped() if quiet else contextlib.nullcontext():
            result = pipeline.run()
            result.wait_until_finish()
        return result
    except UserError as e:  # raised in this process; Beam appends " [while running 'X']"
        raise UserError(_WHILE_RUNNING.sub("", str(e)).strip()) from None
    except Exception as e:  # a worker's UserError arrives wrapped in the runner's exception
        found = _USER_ERROR_IN_WORKER.findall(str(e))
        if found:
            raise UserError(_WHILE_RUNNING.sub("", found[-1]).strip()) from None
        raise


def _log_summary(result, stats, seconds, output_dir):
    from apache_beam.metrics.metric import MetricsFilter

    from preprocessing.transforms import COUNTER_NAMESPACE

    try:
        counters = {c.key.metric.name: c.committed for c in result.metrics().query(
            MetricsFilter().with_namespace(COUNTER_NAMESPACE))["counters"]}
        logger.info("counters: %s", ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    except NotImplementedError:  # e.g. the DaskRunner collects no metrics
        logger.info("counters: not reported by %s; the summary is from %s",
                    type(result).__name__, STATS_FILE)
    tokens = stats["tokens_in"]
    logger.info("prepared %s in %.1f s: %d documents, %d tokens (%.0f tokens/s), %d examples "
                "per pass, %d tokens dropped at stream ends, %d lines skipped (%s)",
                output_dir, seconds, stats["documents"], tokens, tokens / max(seconds, 1e-9),
                stats["passes"][0]["examples"], stats["passes"][0]["tokens_dropped_at_stream_ends"],
                sum(stats["skipped_lines"].values()),
                ", ".join(f"{k}: {v}" for k, v in stats["skipped_lines"].items()))
    if "eval" in stats:
        held = stats["eval"]
        logger.info("eval split: %d documents, %d tokens, %d examples", held["documents"],
                    held["tokens_in"], held["passes"][0]["examples"])


def prepare(input_glob, tokenizer, output_dir, config, overrides=(), beam_argv=(),
            eval_input_glob=None):
    """Runs the job; returns the stats.json content.

    `config` names a run config or is a path (its data section and model.n_token are used),
    `overrides` are `section.key=value` strings, `beam_argv` Beam's own options (e.g.
    `--runner=DataflowRunner`, `--direct_num_workers=2`). The eval split holds the documents
    `data.eval_fraction` chooses, or the corpus `eval_input_glob` names.
    """
    from apache_beam.io.filesystems import FileSystems

    options = beam_options(beam_argv)
    run_config = load_run_config(config, overrides)
    data_config = run_config.data
    tokenizer_path = _local_to_absolute(tokenizer)
    output_dir = _local_to_absolute(output_dir)
    check_output_directory(output_dir, "--output")
    tokenizer = load_tokenizer(tokenizer_path, uncased=data_config.uncased,
                               n_token=run_config.model.n_token)
    files = match_input_files(_local_to_absolute(input_glob))
    eval_files = []
    if eval_input_glob:
        if data_config.eval_fraction:
            raise UserError("--eval-input: data.eval_fraction is set too; hold documents out "
                            "or give an eval corpus, not both")
        eval_files = match_input_files(_local_to_absolute(eval_input_glob))
    source_files = [path for path, _ in files]
    eval_source_files = [path for path, _ in eval_files]
    check_output_dir(output_dir, {"data": data_config.get_config(),
                                  "tokenizer_sha256": tokenizer.sha256,
                                  "source_files": source_files,
                                  "eval_source_files": eval_source_files})
    corpus_bytes = sum(size for _, size in files)
    block_tokens = block_tokens_for(corpus_bytes, data_config.num_streams, data_config.seq_len)
    logger.info("preparing %d files (%d bytes) into %s with %d streams (blocks of ~%d tokens), "
                "%d passes", len(files), corpus_bytes, output_dir, data_config.num_streams,
                block_tokens, data_config.num_passes)
    started = time.monotonic()
    split_ranges = ([(TRAIN, pieces) for pieces in plan_ranges(files)]
                    + [(EVAL, pieces) for pieces in plan_ranges(eval_files)])
    sizes = dict(files + eval_files)
    range_bytes = [sum(piece.end - piece.start if piece.end >= 0 else sizes[piece.path]
                       for piece in pieces) for _, pieces in split_ranges]
    stream_files = expected_stream_files(data_config, bool(data_config.eval_fraction
                                                           or eval_source_files))
    with translate_filesystem_errors("--output", output_dir), \
            JobProgress(output_dir, range_bytes, stream_files):
        result = _run_pipeline(options, lambda pipeline: build_pipeline(
            pipeline, split_ranges, block_tokens, data_config, tokenizer, output_dir,
            source_files, eval_source_files))
    with FileSystems.open(FileSystems.join(output_dir, STATS_FILE)) as f:
        stats = json.loads(f.read().decode("utf-8"))
    _log_summary(result, stats, time.monotonic() - started, output_dir)
    return stats
