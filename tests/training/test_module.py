"""The one LightningModule: what trains, what is saved, what is restored."""

import pytest
import torch

from data_modules import RefCocoDataModule
from samadapt.errors import SamAdaptError
from samadapt.sam.preprocess import content_sizes
from samadapt.training.module import SamAdaptModule
from tests.conftest import TEST_SIZE


def make_module(checkpoint, method="shallow_fusion", bert=None, **kw):
    text = {"text_encoder": "bert", "text_options": {"name_or_path": bert}} if bert else {}
    return SamAdaptModule(method=method, sam_variant="tiny", sam_checkpoint=checkpoint, image_size=TEST_SIZE,
                          **text, **kw)


def tiny_batch(shapes_root, split="val", size=4):
    dm = RefCocoDataModule(shapes_root, dataset="shapes", image_size=TEST_SIZE, batch_size=size,
                           eval_batch_size=size, test_splits=["testA"])
    dm.setup("fit")
    return next(iter(dm.val_dataloader() if split == "val" else dm.train_dataloader()))


def unpadded(batch, i):
    """Sample i's image without its letterbox padding, as the official Sam.forward takes it (Sam.preprocess pads
    after normalising, with the 0 that our padding at the pixel mean becomes)."""
    h, w = content_sizes(batch, TEST_SIZE)[i].tolist()
    return batch["image"][i][:, :h, :w]


def assert_text_stays_with_its_samples(module, batch, without_text, with_text):
    """In a batch of 4 prompted alternately without and with text, each sample gets the output it gets in a batch
    of its own kind, and the text does change the output."""
    with torch.no_grad():
        mixed, _ = module.model(batch, [without_text, with_text, without_text, with_text])
        all_without, _ = module.model(batch, [without_text] * 4)
        all_with, _ = module.model(batch, [with_text] * 4)
    assert torch.allclose(mixed[0], all_without[0], atol=1e-5)
    assert torch.allclose(mixed[1], all_with[1], atol=1e-5)
    assert not torch.allclose(all_without[1], all_with[1], atol=1e-4)


def test_decoder_only_trains_exactly_the_decoder(tiny_sam_checkpoint):
    module = make_module(tiny_sam_checkpoint, "decoder_only", eval_prompts="none")
    decoder = sum(p.numel() for p in module.model.sam.mask_decoder.parameters())
    counts = module.parameter_counts()
    assert counts["trainable_params"] == decoder == module.model.trainable["sam.mask_decoder"]
    assert counts["total_params"] > counts["trainable_params"]
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("model.sam.mask_decoder.") for n in trainable)


def test_shallow_fusion_trains_projection_and_decoder_not_text_encoder(tiny_sam_checkpoint, tiny_bert):
    module = make_module(tiny_sam_checkpoint, bert=tiny_bert)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.method.to_prompt") for n in trainable)
    assert not any(n.startswith(("model.text_encoder", "model.sam.image_encoder", "model.sam.prompt_encoder"))
                   for n in trainable)
    optimizer = module.configure_optimizers()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in module.parameters() if p.requires_grad}


def test_text_method_without_text_encoder_is_a_clear_error(tiny_sam_checkpoint):
    with pytest.raises(SamAdaptError, match="text_encoder"):
        make_module(tiny_sam_checkpoint)


def test_bad_method_and_prompt_names(tiny_sam_checkpoint):
    with pytest.raises(SamAdaptError, match="decoder_only"):
        make_module(tiny_sam_checkpoint, "no_such_method")
    with pytest.raises(SamAdaptError, match="prompt kind"):
        make_module(tiny_sam_checkpoint, "decoder_only", eval_prompts="scribble")


def test_gradients_reach_only_trainable_parts(tiny_sam_checkpoint, tiny_bert, shapes_root):
    module = make_module(tiny_sam_checkpoint, bert=tiny_bert)
    batch = tiny_batch(shapes_root, "train")
    loss, _ = module.step_loss(batch, [frozenset({"text"})] * len(batch["text"]))
    loss.backward()
    for name, p in module.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
    assert module.model.method.to_prompt.net[0].weight.grad.abs().sum() > 0


def test_text_changes_the_prediction(tiny_sam_checkpoint, tiny_bert, shapes_root):
    module = make_module(tiny_sam_checkpoint, bert=tiny_bert).eval()
    batch = tiny_batch(shapes_root)
    with torch.no_grad():
        with_text, _ = module(batch)
        batch["text"] = ["the blue square"] * len(batch["text"])
        other_text, _ = module(batch)
    assert not torch.allclose(with_text, other_text)


def test_checkpoint_holds_only_trainable_weights_and_restores(tiny_sam_checkpoint, tiny_bert, shapes_root, tmp_path):
    import lightning as L

    module = make_module(tiny_sam_checkpoint, bert=tiny_bert)
    with torch.no_grad():
        module.model.method.to_prompt.net[-1].weight.add_(0.5)  # something a fresh module would not have
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    expected = {"model." + k for k in module.model.trainable_state_dict()}
    assert set(saved) == expected
    assert not any(k.startswith(("model.sam.image_encoder", "model.text_encoder")) for k in saved)

    restored = SamAdaptModule.load_from_checkpoint(path).eval()  # rebuilds SAM from hparams' checkpoint path
    batch = tiny_batch(shapes_root)
    module.eval()
    with torch.no_grad():
        assert torch.allclose(module(batch)[0], restored(batch)[0])


def test_checkpoint_of_another_method_is_refused(tiny_sam_checkpoint, tiny_bert, tmp_path):
    import lightning as L

    module = make_module(tiny_sam_checkpoint, "decoder_only", eval_prompts="none")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=0)
    trainer.strategy.connect(module)
    path = tmp_path / "decoder.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"].update(method="shallow_fusion", text_encoder="bert",
                                    text_options={"name_or_path": tiny_bert})
    torch.save(ckpt, path)
    with pytest.raises(SamAdaptError, match="lacks"):
        SamAdaptModule.load_from_checkpoint(path)


@pytest.mark.parametrize("method", ["decoder_only", "shallow_fusion"])
def test_untrained_module_equals_official_sam_forward(tiny_sam_checkpoint, tiny_bert, shapes_root, method):
    """At their initial values the methods are frozen SAM: same low-res logits as segment-anything's Sam.forward
    for the same point and box prompts (shallow fusion given no text, since appended tokens always count)."""
    module = make_module(tiny_sam_checkpoint, method, bert=tiny_bert if method == "shallow_fusion" else None,
                         eval_prompts="points+box").eval()
    batch = tiny_batch(shapes_root)
    with torch.no_grad():
        ours, _ = module(batch)
        sam = module.model.sam
        for i in range(len(batch["text"])):
            record = {"image": unpadded(batch, i), "original_size": (TEST_SIZE, TEST_SIZE),
                      "point_coords": batch["points"][i][None], "point_labels": batch["point_labels"][i][None],
                      "boxes": batch["box"][i][None]}
            official = sam([record], multimask_output=False)[0]["low_res_logits"]
            assert torch.allclose(ours[i : i + 1], official, atol=1e-5)


def test_warmup_then_cosine_schedule_and_lr_scaling():
    """The per-step lr factor: linear warm-up to 1, then constant or cosine to 0; lr scaled to the global batch."""
    from types import SimpleNamespace

    from samadapt.training.optim import configure_optimization, warmup_then

    cosine = warmup_then("cosine", warmup=10, total=110)
    assert [cosine(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert [cosine(s) for s in (10, 60, 110, 200)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert warmup_then("none", warmup=4, total=100)(50) == 1.0
    trainer = SimpleNamespace(estimated_stepping_batches=200, max_epochs=4, num_devices=2, num_nodes=1,
                              accumulate_grad_batches=2, datamodule=SimpleNamespace(batch_size=8))
    param = torch.nn.Parameter(torch.zeros(1))
    settings = dict(optimizer="adam", lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0, scheduler="cosine",
                    warmup_steps=0, warmup_epochs=0.5, lr_scaling="linear", lr_reference_batch=64)
    configured = configure_optimization([param], trainer, **settings)
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["betas"] == (0.9, 0.99)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 32 / 64 * 1 / 25)  # global batch 32; 25 warm-up
    assert schedule.lr_lambdas[0](24) == 1.0 and schedule.lr_lambdas[0](200) == pytest.approx(0.0)
    plain = configure_optimization([param], None, **{**settings, "scheduler": "none", "warmup_epochs": 0,
                                                      "lr_scaling": "none"})
    assert isinstance(plain, torch.optim.Optimizer) and plain.param_groups[0]["lr"] == 1e-3


def test_original_binary_eval_resolution_evaluates(tiny_sam_checkpoint, shapes_root):
    """The released DIT code's evaluation (binarise at the model's size, then resize the mask) is a module option."""
    module = make_module(tiny_sam_checkpoint, "decoder_only", eval_prompts="points", eval_resolution="original_binary")
    assert module.eval_resolution() == "original_binary"
    batch = tiny_batch(shapes_root)
    with torch.no_grad():
        module.eval()._evaluate(batch, module.val_metrics)
    values = module.val_metrics["points"].compute()
    assert 0.0 <= float(values["oIoU"]) <= 1.0 and len(module.val_metrics["points"].per_sample()) == len(batch["text"])
    with pytest.raises(SamAdaptError, match="original_binary"):
        make_module(tiny_sam_checkpoint, "decoder_only", eval_prompts="none", eval_resolution="binary")
