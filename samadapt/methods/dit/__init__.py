from samadapt.methods.dit.method import DeepInstructionTuning

__all__ = ["DeepInstructionTuning"]
