# The PyTorch half of TinyForCausalLM: a relative import of its configuration, as published with
# Hugging Face remote code.
from transformers import PreTrainedModel

from .configuration_tiny import TinyConfig


class TinyForCausalLM(PreTrainedModel):
    config_class = TinyConfig
