// The user's own model class for pipelines/tanuki-8x8b-vision.pipe, kept in two files as real custom
// models are (configuration_*.ts and modeling_*.ts). The compiler only checks, without running it, that
// this module exports `TanukiForCausalLM`; the runtime defines the component interface it implements.
import { readTanukiConfig, type TanukiConfig } from './configuration_tanuki.js';

export class TanukiForCausalLM {
  readonly config: TanukiConfig;

  constructor(configJson: Record<string, unknown>) {
    this.config = readTanukiConfig(configJson);
  }
}

export { readTanukiConfig };
