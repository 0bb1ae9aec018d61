"""DataConfig: how `xlnet prepare` cuts, masks and permutes the corpus. The trainer checks the
dataset's recorded values against it (dataset_info.json), so both stages read the same section."""

import dataclasses
from typing import Literal

from xlnet.config.dataclass_io import from_mapping, option
from xlnet.errors import UserError


@dataclasses.dataclass(frozen=True)
class DataConfig:
    seq_len: int = option(512, "tokens per example (L)")
    reuse_len: int = option(256, "leading tokens continued from the previous segment (R)")
    num_predict: int = option(85, "targets per example (K); split K-K//2 | K//2 between halves")
    perm_size: int = option(256, "factorization-order block size; divides both halves")
    bi_data: bool = option(True, "also write time-reversed streams")
    mask_alpha: int = option(6, "context tokens per span token (spans cover ~beta/alpha)")
    mask_beta: int = option(1, "see mask_alpha")
    max_gram: int = option(5, "longest span")
    span_unit: Literal["token", "word"] = option(
        "token", "`token`: the original's n-piece spans (Q1); `word`: n whole words")
    num_streams: int = option(
        64, "forward streams (bi_data adds their reversed copies); the global batch divides "
        "the total")
    num_passes: int = option(1, "independently sampled passes (A/B, masks, orders)")
    seed: int = option(0, "seed of all data sampling")
    uncased: bool = option(False, "lower-case text (the released models are cased)")
    use_eod: bool = option(True, "a blank line (document end) emits `<eod>`")
    eval_fraction: float = option(
        0.0, "documents held out for the eval split (chosen by a hash of the document's place "
        "and the seed); or give `prepare --eval-input`")
    max_unk_fraction: float = option(
        0.05, "refuse a corpus with more <unk> tokens than this share (names the worst file); "
        "1 = no check")
    eval_num_streams: int = option(
        0, "forward streams of the eval split; 0 = num_streams (the global batch divides them)")

    def __post_init__(self):
        for name in ("seq_len", "num_predict", "perm_size", "mask_alpha", "mask_beta",
                     "max_gram", "num_streams", "num_passes"):
            if getattr(self, name) <= 0:
                raise UserError(f"data.{name}: must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise UserError(f"data.eval_fraction: must be in [0, 1), got {self.eval_fraction}")
        if not 0.0 < self.max_unk_fraction <= 1.0:
            raise UserError(
                f"data.max_unk_fraction: must be in (0, 1], got {self.max_unk_fraction}")
        if self.eval_num_streams < 0:
            raise UserError(f"data.eval_num_streams: must be >= 0, got {self.eval_num_streams}")
        if self.seed < 0:
            raise UserError(f"data.seed: must be >= 0, got {self.seed}")
        if not 0 < self.reuse_len < self.seq_len - 3:
            raise UserError(
                f"data.reuse_len: must be in (0, seq_len - 3) = (0, {self.seq_len - 3}), "
                f"got {self.reuse_len}")
        first_goal, second_goal = self.predict_goals
        if first_goal > self.reuse_len:
            raise UserError(
                f"data.num_predict: the reuse half needs {first_goal} targets but holds only "
                f"reuse_len={self.reuse_len} tokens; lower num_predict or raise reuse_len")
        if second_goal > self.seq_len - self.reuse_len - 3:
            raise UserError(
                f"data.num_predict: the second half needs {second_goal} targets but holds only "
                f"{self.seq_len - self.reuse_len - 3} non-functional tokens; lower num_predict")
        for half, length in (("reuse_len", self.reuse_len),
                             ("seq_len - reuse_len", self.seq_len - self.reuse_len)):
            if length % self.perm_size:
                raise UserError(
                    f"data.perm_size: {self.perm_size} does not divide {half} = {length}")

    @property
    def predict_goals(self):
        """Targets sampled in the reuse half and in the second half (43, 42 for K=85)."""
        return self.num_predict - self.num_predict // 2, self.num_predict // 2

    @property
    def eval_streams(self):
        """Forward streams of the eval split."""
        return self.eval_num_streams or self.num_streams

    @classmethod
    def from_dict(cls, mapping, section="data"):
        return cls(**from_mapping(cls, mapping, section))

    def get_config(self):
        return dataclasses.asdict(self)
