# Configuration of TanukiForCausalLM (the PyTorch half, as published with Hugging Face remote code):
# Mixtral's fields plus Tanuki's router temperature. configuration_tanuki.ts is the same configuration
# for pipec's runtime.
from transformers import PretrainedConfig

DEFAULT_ROUTER_TEMPERATURE = 2.0


class TanukiConfig(PretrainedConfig):
    model_type = "tanuki"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=65536,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_local_experts=8,
        num_experts_per_tok=2,
        router_aux_loss_coef=0.02,
        router_temperature=DEFAULT_ROUTER_TEMPERATURE,
        output_router_logits=False,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.num_local_experts = num_local_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.router_aux_loss_coef = router_aux_loss_coef
        if not router_temperature > 0:
            raise ValueError("router_temperature must be positive, got %r" % (router_temperature,))
        self.router_temperature = router_temperature
        self.output_router_logits = output_router_logits
        self.max_position_embeddings = max_position_embeddings
        # transformers 5 writes rope_parameters; a lone rope_theta (4.x) is read too
        rope_parameters = kwargs.pop("rope_parameters", None)
        if isinstance(rope_parameters, dict) and "rope_theta" in rope_parameters:
            rope_theta = rope_parameters["rope_theta"]
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
