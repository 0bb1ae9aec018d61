"""The corpus job's progress, read from what it has written so far.

Beam's counters are of no use while a job runs on the local runner (it reports them only at the
end) and arrive late or not at all on others, but every runner leaves the same files behind: a
range's token store index once the range is tokenized (token_store.py), a stream file once it is
written. A thread in the launching process lists them every few seconds: input bytes, documents
and tokens done with an ETA, then stream files written of those due. Files an earlier, killed
run left behind count once this run rewrites them. It only lists, and reads the small index
files, so it works wherever the output directory is (local or object store).
"""

import logging
import threading

from preprocessing.token_store import parked_counts, parked_ranges
from xlnet.progress import Progress, megabytes
from xlnet.schema import EVAL_DIR, PASS_DIR_PREFIX

logger = logging.getLogger("preprocessing.prepare")

POLL_S = 2.0
LOG_EVERY_S = 30.0


def expected_stream_files(data_config, has_eval_split):
    per_direction = (data_config.num_streams * data_config.num_passes
                     + (data_config.eval_streams if has_eval_split else 0))
    return per_direction * (2 if data_config.bi_data else 1)


class JobProgress:
    """Watches a running job from a thread (a context manager around the run)."""

    def __init__(self, output_dir, range_bytes, stream_files, poll_s=None, log_every_s=None):
        """`range_bytes[i]`: input bytes of range i; `stream_files`: how many the job writes."""
        self.output_dir = output_dir
        self.range_bytes = range_bytes
        self.stream_files = stream_files
        self.poll_s = POLL_S if poll_s is None else poll_s
        self.log_every_s = LOG_EVERY_S if log_every_s is None else log_every_s
        self._counted = {}  # (split, range index) -> (documents, tokens)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="prepare-progress",
                                        daemon=True)

    def __enter__(self):
        self._stale_ranges = self._listed(parked_ranges, {})
        self._stale_streams = self._listed(self._stream_files, {})
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        with Progress(logger, "tokenizing", total=sum(self.range_bytes), describe=megabytes,
                      log_every_s=self.log_every_s) as tokenizing:
            while not self._stop.wait(self.poll_s):
                done_bytes, documents, tokens = self._tokenized()
                tokenizing.update(done_bytes, f"{documents:,} documents, {tokens:,} tokens")
                if done_bytes == tokenizing.total:
                    break
        with Progress(logger, "writing stream files", total=self.stream_files,
                      log_every_s=self.log_every_s) as writing:
            while not self._stop.wait(self.poll_s):
                written = self._listed(self._stream_files, self._stale_streams)
                writing.update(sum(self._stale_streams.get(path) != updated
                                   for path, updated in written.items()))

    def _tokenized(self):
        for key, updated in self._listed(parked_ranges, self._stale_ranges).items():
            if key not in self._counted and self._stale_ranges.get(key) != updated:
                try:
                    self._counted[key] = parked_counts(self.output_dir, *key)
                except Exception as e:  # removed by the job's end meanwhile
                    logger.debug("progress: cannot read %s's index (%s)", key, e)
        done = {range_index for _, range_index in self._counted}
        documents = sum(d for d, _ in self._counted.values())
        tokens = sum(t for _, t in self._counted.values())
        return sum(self.range_bytes[i] for i in done), documents, tokens

    def _listed(self, lister, otherwise):
        try:
            return lister(self.output_dir)
        except Exception as e:  # a listing that fails now may work next time
            logger.debug("progress: cannot list %s (%s)", self.output_dir, e)
            return otherwise

    @staticmethod
    def _stream_files(output_dir):
        """{path: modification time} of the stream files written."""
        from apache_beam.io.filesystems import FileSystems

        patterns = [FileSystems.join(output_dir, *parts, f"{PASS_DIR_PREFIX}*",
                                     "stream-*.tfrecord") for parts in ((), (EVAL_DIR,))]
        return {m.path: m.last_updated_in_seconds for result in FileSystems.match(patterns)
                for m in result.metadata_list}
