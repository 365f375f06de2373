"""The demo's stand-in for CLIP: a tiny open_clip CLIP pretrained contrastively on the synthetic shapes.

Real CLIP learned from captioned web images; this one learns from the demo's training images and their
referring sentences ("the red circle on the left"). The image side is dense: for each (referent, sentence)
the image's patch embeddings are compared with the sentence embedding by cosine, averaged over the patches of
the referent (its region) and over those of the background. A sentence must score its own region above every
other region and background of the batch (InfoNCE, several positives: same colour and shape). This trains
the patch-level similarity map that CLIP-Guided SAM and the clip_points pipeline read, on the same input path
(the letterboxed SAM input resized to the tower's size). Saved as a plain state dict, open_clip's format.
"""

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from samadapt.io import atomic_write

# Keyword arguments of open_clip.CLIP; experiments/demo/clip_*.yaml repeat them as model.text_options.model_cfg.
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 64, "head_width": 16, "patch_size": 8, "image_size": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def concept(text: str) -> str:
    """What a sentence names regardless of where: its colour and shape words ("red circle")."""
    from data_modules.synthetic.referring import COLORS, SHAPES

    return " ".join(w for w in text.split() if w in COLORS or w in SHAPES)


def load_regions(data_root: Path, image_size: int, grid: int, limit: int | None = None) -> dict:
    """Every training (referent, sentence) of the synthetic set, as the model sees it (letterboxed)."""
    from data_modules.datasets.refcoco import RefCocoDataset
    from data_modules.pipeline.binary import SampleOptions

    dataset = RefCocoDataset(str(data_root), "shapes", "unc", "train", None, SampleOptions(image_size), train=False)
    images, regions, backgrounds, texts = [], [], [], []
    for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
        sample = dataset[i]
        images.append(sample["image"].to(torch.uint8))
        content = (sample["image"].abs().amax(0, keepdim=True) > 0).float()
        # fraction of each patch covered by the referent / by the background inside the image content
        mask = sample["mask"].float()  # uint8 {0, 1}
        regions.append(F.adaptive_avg_pool2d(mask, grid)[0])
        backgrounds.append(F.adaptive_avg_pool2d(content * (1 - mask), grid)[0])
        texts.append(sample["text"])
    return {"images": torch.stack(images), "regions": torch.stack(regions),
            "backgrounds": torch.stack(backgrounds), "texts": texts}


def region_scores(cosines: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(T,B,g,g) cosines of T sentences with B images' patches, (B,g,g) region weights -> (T,B) mean cosines."""
    return (cosines * weights[None]).sum((-1, -2)) / weights.sum((-1, -2)).clamp(min=1e-6)[None]


def pretrain_tiny_clip(data_root: Path, out: Path, steps: int = 300, batch_size: int = 32, seed: int = 0,
                       image_size: int = 128, max_samples: int = 1500) -> Path:
    """Train TINY_CLIP on (at most `max_samples` sentences of) the synthetic training split; save its state dict."""
    import open_clip

    from samadapt.text.clip_vision import CLIP_MEAN, CLIP_STD

    start = time.perf_counter()
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP)
    tokenizer = open_clip.SimpleTokenizer(context_length=model.context_length)
    visual = model.visual
    size = TINY_CLIP["vision_cfg"]["image_size"]
    grid = size // TINY_CLIP["vision_cfg"]["patch_size"]
    data = load_regions(data_root, image_size, grid, max_samples)
    print(f"[demo] tiny CLIP: {len(data['texts'])} sentences loaded in {time.perf_counter() - start:.0f} s", flush=True)
    tokens = tokenizer(data["texts"])
    concepts = [concept(t) for t in data["texts"]]
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=max(1, steps), pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randperm(len(concepts), generator=generator)[:batch_size]
        x = F.interpolate(data["images"][idx].float(), size, mode="bilinear", align_corners=False, antialias=True)
        patches = visual.ln_post(visual.transformer(visual._embeds((x - mean) / std))[:, 1:]) @ visual.proj
        patches = F.normalize(patches.reshape(len(idx), grid, grid, -1), dim=-1)
        text = F.normalize(model.encode_text(tokens[idx]), dim=-1)
        cosines = torch.einsum("bhwe,te->tbhw", patches, text)
        regions = region_scores(cosines, data["regions"][idx])  # (T,B): sentence t vs referent region of b
        background = region_scores(cosines, data["backgrounds"][idx])  # (T,B): every background is a negative
        logits = model.logit_scale.exp().clamp(max=100) * torch.cat([regions, background], dim=1)
        names = [concepts[i] for i in idx.tolist()]
        positive = torch.tensor([[a == b for b in names] for a in names], dtype=torch.float)
        target = torch.cat([positive, torch.zeros_like(positive)], dim=1)
        text_loss = -(target / target.sum(1, keepdim=True) * logits.log_softmax(dim=1)).sum(1).mean()
        image_loss = -(positive / positive.sum(0, keepdim=True) * logits[:, : len(idx)].log_softmax(dim=0)).sum(0)
        loss = (text_loss + image_loss.mean()) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"[demo] tiny CLIP step {step}: contrastive loss {loss.item():.3f}", flush=True)
    model.eval()
    atomic_write(out, lambda tmp: torch.save(model.state_dict(), tmp))
    print(f"[demo] tiny CLIP pretrained in {time.perf_counter() - start:.0f} s, saved to {out}")
    return out
