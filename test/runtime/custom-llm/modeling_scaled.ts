// A user's own LLM class for the runtime tests, split over two files like a real modeling_*.py /
// configuration_*.py pair: this file imports its helper relatively. It reuses the base Llama decoder
// and divides the logits by a temperature read from its config.
import { logitTemperature, type Tensor } from './scaling.js';

interface Ctx {
  tf: { div(a: Tensor, b: number): Tensor };
  base(inputs: Tensor[]): Tensor;
}

export class ScaledLlamaForCausalLM {
  readonly temperature: number;

  constructor(config: Record<string, unknown>) {
    this.temperature = logitTemperature(config);
  }

  forward(ctx: Ctx, inputs: Tensor[]): Tensor {
    return ctx.tf.div(ctx.base(inputs), this.temperature);
  }
}
