# The PyTorch half's configuration (checked, never run, by `pipec check`).
from transformers import PretrainedConfig


class TinyConfig(PretrainedConfig):
    model_type = "tiny_custom"
