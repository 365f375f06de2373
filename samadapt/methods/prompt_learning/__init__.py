from samadapt.methods.prompt_learning.method import PromptLearning

__all__ = ["PromptLearning"]
