# Three relative imports that break once the package is loaded as a package.
from transformers import PreTrainedModel

from .configuration_tanuki import TanukiConfig
from .configuration_tiny import TinyConfig, TinyVisionConfig
from ..shared import helpers


class BrokenForCausalLM(PreTrainedModel):
    config_class = TanukiConfig
