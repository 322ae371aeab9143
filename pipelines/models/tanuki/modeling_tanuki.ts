// The user's own model class for pipelines/tanuki-8x8b-vision.pipe, kept in two files as real custom
// models are (configuration_*.ts and modeling_*.ts). The compiler only checks, without running it, that
// this module exports `TanukiForCausalLM`; the runtime calls it through the component interface of
// docs/runtime.md: constructed with the component's config.json, then forward(ctx, inputs).
import { readTanukiConfig, type TanukiConfig } from './configuration_tanuki.js';

type Tensor = unknown;
interface ComponentContext {
  /** The base component's forward (here the Mixtral decoder), under the same HF parameter names. */
  base(inputs: Tensor[]): Tensor;
}

export class TanukiForCausalLM {
  readonly config: TanukiConfig;

  constructor(configJson: Record<string, unknown>) {
    this.config = readTanukiConfig(configJson);
  }

  /** Tanuki's architecture is Mixtral's; a real class would change a part here and call ctx.base for the rest. */
  forward(ctx: ComponentContext, inputs: Tensor[]): Tensor {
    return ctx.base(inputs);
  }
}

export { readTanukiConfig };
