from samadapt.methods.clip_guided.method import ClipGuided

__all__ = ["ClipGuided"]
