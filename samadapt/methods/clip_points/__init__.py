from samadapt.methods.clip_points.method import ClipPoints

__all__ = ["ClipPoints"]
