from samadapt.methods.shallow_fusion.method import ShallowFusion

__all__ = ["ShallowFusion"]
