// Configuration of the TanukiForCausalLM example class: the fields pipec reads from config.json.
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
}

export function readTanukiConfig(json: Record<string, unknown>): TanukiConfig {
  const num = (k: keyof TanukiConfig): number => {
    const v = json[k];
    if (typeof v !== 'number') throw new Error(`config.json: ${k} must be a number`);
    return v;
  };
  return {
    vocab_size: num('vocab_size'),
    hidden_size: num('hidden_size'),
    intermediate_size: num('intermediate_size'),
    num_hidden_layers: num('num_hidden_layers'),
    num_attention_heads: num('num_attention_heads'),
    num_key_value_heads: num('num_key_value_heads'),
    num_local_experts: num('num_local_experts'),
    num_experts_per_tok: num('num_experts_per_tok'),
    router_aux_loss_coef: num('router_aux_loss_coef'),
  };
}
