"""Tiny text models written to disk for tests (plain functions: a directory in, a path/config out)."""

from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an on in of at to and is with near next behind front this that it "
    "left right top bottom middle center upper lower above below "
    "red green blue yellow orange purple pink black white gray grey brown "
    "circle square triangle rectangle star ellipse shape object thing "
    "big small large tiny first second third one two three "
    "man woman person dog cat car . , !"
).split()


def make_tiny_bert(dirpath: str | Path, seed: int = 0) -> str:
    """Save a tiny random BertModel (hidden 32, 2 layers, 2 heads) and its WordPiece tokenizer.

    Returns the folder, loadable offline with AutoModel / AutoTokenizer.from_pretrained(folder).
    """
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(dirpath) / "tiny_bert"
    folder.mkdir(parents=True, exist_ok=True)
    vocab = list(dict.fromkeys(SPECIAL_TOKENS + WORDS))
    # transformers 5: BertTokenizer(vocab=...) builds the fast tokenizer from the word list.
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(str(folder))
    return str(folder)


def tiny_clip_config() -> dict:
    """Keyword arguments of open_clip.CLIP for a tiny model (text width 32, embed 16, 2 text layers, 4x4 patches)."""
    return {
        "embed_dim": 16,
        "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }


def make_tiny_clip(dirpath: str | Path, seed: int = 0) -> tuple[dict, str]:
    """Save a tiny random open_clip.CLIP state dict with torch.save; returns (model_cfg, weights_path).

    The vocabulary is the real CLIP BPE size (49408) so open_clip's bundled tokenizer works.
    """
    import open_clip

    cfg = tiny_clip_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**cfg)
    path = Path(dirpath) / "tiny_clip.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return cfg, str(path)
