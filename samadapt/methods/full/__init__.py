from samadapt.methods.full.method import FullFinetune

__all__ = ["FullFinetune"]
