# Defines TinyForCausalLM; its configuration is a relative import.
from transformers import PreTrainedModel

from .configuration_tiny import TinyConfig

try:
    from .flash_kernels import fused_attention  # optional: the module's own business when it is missing
except ImportError:
    fused_attention = None


class TinyForCausalLM(PreTrainedModel):
    config_class = TinyConfig
