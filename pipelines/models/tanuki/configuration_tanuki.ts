// Configuration of TanukiForCausalLM (the TypeScript half): the fields pipec's runtime reads from the
// component's config.json. configuration_tanuki.py is the same configuration for PyTorch / transformers.
export interface TanukiConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  num_local_experts: number;
  num_experts_per_tok: number;
  router_aux_loss_coef: number;
  /** Tanuki's own: the router's logits are divided by this before the softmax (Mixtral: 1). */
  router_temperature: number;
}

/** Tanuki's router temperature when config.json does not set one. */
export const DEFAULT_ROUTER_TEMPERATURE = 2.0;

export function readTanukiConfig(json: Record<string, unknown>): TanukiConfig {
  const num = (k: keyof TanukiConfig, fallback?: number): number => {
    const v = json[k] ?? fallback;
    if (typeof v !== 'number') throw new Error(`config.json: ${k} must be a number`);
    return v;
  };
  const config: TanukiConfig = {
    vocab_size: num('vocab_size'),
    hidden_size: num('hidden_size'),
    intermediate_size: num('intermediate_size'),
    num_hidden_layers: num('num_hidden_layers'),
    num_attention_heads: num('num_attention_heads'),
    num_key_value_heads: num('num_key_value_heads'),
    num_local_experts: num('num_local_experts'),
    num_experts_per_tok: num('num_experts_per_tok'),
    router_aux_loss_coef: num('router_aux_loss_coef', 0),
    router_temperature: num('router_temperature', DEFAULT_ROUTER_TEMPERATURE),
  };
  if (!(config.router_temperature > 0)) throw new Error('config.json: router_temperature must be positive');
  return config;
}
