from samadapt.methods.ptx.method import ParallelAdapter, SamPtx

__all__ = ["ParallelAdapter", "SamPtx"]
