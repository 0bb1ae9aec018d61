"""Serialised tf.train.Example records and TFRecord files, without importing TensorFlow.

`encode_examples` builds, for a batch of examples at once, exactly the bytes of
`tf.train.Example(...).SerializeToString(deterministic=True)` (map keys sorted, int64 lists
packed); the test compares it with TensorFlow byte for byte. Encoding a whole batch with numpy
is what keeps the writer cheap, and keeping TensorFlow out of the Beam workers saves each of
them seconds of start-up and hundreds of MB.
"""

import functools
import struct
import uuid

import crcmod.predefined
import numpy as np

_crc32c = crcmod.predefined.mkPredefinedCrcFun("crc-32c")
_LENGTH_DELIMITED_FIELD_1 = b"\x0a"  # Example.features, Features.feature entry, map key,
#                                      Int64List.value (packed)
_MAP_VALUE_FIELD = b"\x12"  # field 2 (value) of a map entry
_INT64_LIST_FIELD = b"\x1a"  # Feature.int64_list (field 3)
_MAX_VARINT_BYTES = 10


def _varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_rows(values):
    """Packed varints of each row of a non-negative [n, m] integer array -> n bytes objects."""
    values = np.asarray(values)
    if values.size and values.min() < 0:
        raise ValueError("record features must be non-negative")
    rows, columns = values.shape
    if values.size and values.max() < 0x80:  # one byte per value: the bytes are the values
        return [row.tobytes() for row in values.astype(np.uint8)]
    flat = values.astype(np.uint64).ravel()  # [n·m]
    widths = np.ones(flat.size, dtype=np.int64)  # bytes per value
    for shift in range(7, 7 * _MAX_VARINT_BYTES, 7):
        widths += flat >= (np.uint64(1) << np.uint64(shift))
    ends = np.cumsum(widths)
    starts = ends - widths
    out = np.empty(int(ends[-1]) if flat.size else 0, dtype=np.uint8)
    for byte in range(int(widths.max()) if flat.size else 0):
        chosen = widths > byte
        payload = (flat[chosen] >> np.uint64(7 * byte)) & np.uint64(0x7F)
        more = (widths[chosen] > byte + 1).astype(np.uint64) << np.uint64(7)
        out[starts[chosen] + byte] = (payload | more).astype(np.uint8)
    buffer = out.tobytes()
    row_ends = ends.reshape(rows, columns)[:, -1] if columns else np.zeros(rows, np.int64)
    row_starts = np.concatenate([[0], row_ends[:-1]])
    return [buffer[s:e] for s, e in zip(row_starts.tolist(), row_ends.tolist())]


@functools.lru_cache(maxsize=4096)
def _entry_header(name, packed_length):
    """Bytes of a feature-map entry before its packed values (they depend on lengths only)."""
    int64_list_length = (1 + len(_varint(packed_length)) + packed_length) if packed_length else 0
    feature_length = 1 + len(_varint(int64_list_length)) + int64_list_length
    key = name.encode()
    entry_head = (_LENGTH_DELIMITED_FIELD_1 + _varint(len(key)) + key
                  + _MAP_VALUE_FIELD + _varint(feature_length)
                  + _INT64_LIST_FIELD + _varint(int64_list_length))
    if packed_length:
        entry_head += _LENGTH_DELIMITED_FIELD_1 + _varint(packed_length)
    entry_length = len(entry_head) + packed_length
    return _LENGTH_DELIMITED_FIELD_1 + _varint(entry_length) + entry_head


def _feature_entry(name, packed):
    return _entry_header(name, len(packed)) + packed


def encode_examples(features):
    """{name: [n, m] non-negative ints} -> n serialised tf.train.Examples of int64 lists."""
    names = sorted(features)
    packed = {name: _varint_rows(np.asarray(features[name]).reshape(
        len(features[name]), -1)) for name in names}
    count = len(packed[names[0]])
    records = []
    for row in range(count):
        body = b"".join(_feature_entry(name, packed[name][row]) for name in names)
        records.append(_LENGTH_DELIMITED_FIELD_1 + _varint(len(body)) + body)
    return records


def _masked_crc(data):
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data):
    """TFRecord framing: length, masked crc32c of the length, data, masked crc32c of data."""
    length = struct.pack("<Q", len(data))
    return b"".join([length, struct.pack("<I", _masked_crc(length)), data,
                     struct.pack("<I", _masked_crc(data))])


class RecordWriter:
    """Writes a TFRecord file under a temporary name and renames it on success only."""

    def __init__(self, path):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        self.path = path
        self.records = 0
        self._temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        self._file = FileSystems.create(self._temporary,
                                        compression_type=CompressionTypes.UNCOMPRESSED)

    def write(self, records):
        self._file.write(b"".join(frame_record(r) for r in records))
        self.records += len(records)

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        from apache_beam.io.filesystems import FileSystems

        self._file.close()
        if error_type is None:
            FileSystems.rename([self._temporary], [self.path])
        else:
            FileSystems.delete([self._temporary])
        return False
