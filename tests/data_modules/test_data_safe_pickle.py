"""Refs pickles load without running code; real (python2, protocol 2) refs still load."""

import json
import os
import pickle

import pytest

from data_modules.datasets.safe_pickle import load_refs, load_refs_pickle
from samadapt.errors import MissingFileError, SamAdaptError, UnsafeFileError


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_malicious_pickle_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1, "x": _Evil(marker)}], protocol=2))
    with pytest.raises(UnsafeFileError) as e:
        load_refs_pickle(path)
    assert not marker.exists()
    msg = str(e.value)
    assert str(path) in msg and "system" in msg and "JSON" in msg


def test_refuses_even_builtin_globals(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"s": {1, 2}}], protocol=2))  # a set is pickled via a global
    with pytest.raises(UnsafeFileError, match=r"\.set'"):
        load_refs_pickle(path)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_loads_builtins_only_pickle(tmp_path, protocol):
    refs = [{"ref_id": 3, "split": "val", "sent_ids": [7], "sentences": [{"sent": "the man", "sent_id": 7}]}]
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(refs, protocol=protocol))
    assert load_refs_pickle(path) == refs


def test_loads_python2_str_pickle(tmp_path):
    # hand-written python2 protocol-2 pickle: [{'sent': 'caf\xe9', 'ref_id': 5}] with py2 byte strings
    data = (b"\x80\x02]q\x00}q\x01(U\x04sentq\x02U\x04caf\xe9q\x03U\x06ref_idq\x04K\x05ua.")
    path = tmp_path / "refs(unc).p"
    path.write_bytes(data)
    assert load_refs_pickle(path) == [{"sent": "café", "ref_id": 5}]


def test_load_refs_prefers_json_beside_pickle(tmp_path):
    pickle_path = tmp_path / "refs(unc).p"
    pickle_path.write_bytes(pickle.dumps([{"from": "pickle"}], protocol=2))
    assert load_refs(pickle_path) == [{"from": "pickle"}]
    (tmp_path / "refs(unc).json").write_text(json.dumps([{"from": "json"}]))
    assert load_refs(pickle_path) == [{"from": "json"}]
    pickle_path.unlink()
    assert load_refs(pickle_path) == [{"from": "json"}]


def test_missing_and_wrong_content(tmp_path):
    with pytest.raises(MissingFileError, match=r"refs\(umd\)"):
        load_refs(tmp_path / "refs(umd).p")
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps({"not": "a list"}, protocol=2))
    with pytest.raises(SamAdaptError, match="list of dicts"):
        load_refs(path)
    path.write_bytes(b"garbage")
    with pytest.raises(SamAdaptError, match="could not read"):
        load_refs(path)
