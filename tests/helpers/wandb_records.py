"""Read a W&B offline run file (run-*.wandb) back, for tests.

wandb 0.31 ships no Python reader for it. The file is a 7-byte header (":W&B", a 2-byte magic, a version
byte) followed by a LevelDB-style log: 32 KiB blocks of chunks, each with a 7-byte header (crc32, little-endian
length, type: 1 full, 2 first, 3 middle, 4 last); each whole record is a wandb.proto Record message.
"""

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7


def read_records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4) and pending:
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def closed_run_file(wandb_dir: Path, timeout: float = 30.0) -> Path:
    """The one offline run file under `wandb_dir`, once complete. wandb.finish() returns before W&B's service
    process has written the file out, so wait for its exit record."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        files = list(Path(wandb_dir).glob("offline-run-*/run-*.wandb"))
        assert len(files) <= 1, files
        if files and any(r.WhichOneof("record_type") == "exit" for r in read_records(files[0])):
            return files[0]
        assert time.monotonic() < deadline, f"no complete W&B run file under {wandb_dir} after {timeout} s"
        time.sleep(0.2)


def run_summary(path: Path) -> dict[str, str]:
    """The run's summary as W&B would upload it: every summary update applied in order (values as JSON text)."""
    summary: dict[str, str] = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "summary":
            summary.update({item.key or "/".join(item.nested_key): item.value_json for item in record.summary.update})
    return summary


def run_record(path: Path):
    return next(r.run for r in read_records(path) if r.WhichOneof("record_type") == "run")


def config_keys(path: Path) -> set[str]:
    return {item.key for r in read_records(path) if r.WhichOneof("record_type") == "config"
            for item in r.config.update}


def logged_media(path: Path, key: str) -> list[dict]:
    """Every logging of the media `key` (e.g. an image list): its fields (count, filenames, all_masks, ...)."""
    import json

    found = []
    for record in read_records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        fields = {item.nested_key[1]: json.loads(item.value_json) for item in record.history.item
                  if list(item.nested_key[:1]) == [key] and len(item.nested_key) == 2}
        steps = [json.loads(item.value_json) for item in record.history.item
                 if (item.key or "/".join(item.nested_key)) == "trainer/global_step"]
        if fields:
            found.append({**fields, "step": steps[0] if steps else None})
    return found
