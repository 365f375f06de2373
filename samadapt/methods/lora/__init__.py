from samadapt.methods.lora.method import LoRA

__all__ = ["LoRA"]
