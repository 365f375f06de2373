"""LoRA on SAM's image encoder (the SAM+PEFT baseline without semantics), through the `peft` library.

peft's `inject_adapter_in_model` replaces each targeted nn.Linear (by default every block's attention `qkv`)
with a LoRA layer that keeps the frozen original as its base layer and adds B(A(x)) * alpha / r, B starting at
zero: at step 0 the encoder is frozen SAM's. Trained: the LoRA matrices and the mask decoder. No text is read.
"""

from collections.abc import Sequence

from segment_anything.modeling import Sam
from torch import nn

from samadapt.errors import SamAdaptError
from samadapt.methods.base import Method
from samadapt.text import TextEncoder


class LoRA(Method):
    conditions_encoder = True  # trainable weights inside the encoder: its embeddings cannot be cached

    def __init__(self, r: int = 4, alpha: float = 4.0, dropout: float = 0.0,
                 target_modules: Sequence[str] = ("qkv",)) -> None:
        """
        Args:
            r, alpha, dropout: LoRA rank, scaling numerator (scale = alpha / r) and dropout on the LoRA input.
            target_modules: names of nn.Linear layers inside the image encoder, as peft matches them
                (qkv: the attention's fused projection; add "proj" for its output, "lin1"/"lin2" for the MLP).
        """
        super().__init__()
        if r < 1:
            raise SamAdaptError(f"lora: r must be >= 1, got {r}")
        self.r, self.alpha, self.dropout, self.target_modules = r, alpha, dropout, list(target_modules)

    def attach(self, sam: Sam, text_encoder: TextEncoder | None) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=self.target_modules, bias="none")
        try:
            inject_adapter_in_model(config, sam.image_encoder)
        except ValueError as err:  # peft: no module matched
            raise SamAdaptError(f"lora: target_modules {self.target_modules} match no layer of SAM's image "
                                f"encoder ({err})") from None

    def trainable_modules(self, sam: Sam) -> dict[str, nn.Module]:
        parts: dict[str, nn.Module] = {"sam.mask_decoder": sam.mask_decoder}
        for name, module in sam.image_encoder.named_modules():
            if name.endswith((".lora_A", ".lora_B")):
                parts[f"sam.image_encoder.{name}"] = module
        return parts
