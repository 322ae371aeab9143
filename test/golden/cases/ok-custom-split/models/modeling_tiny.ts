// A custom class split over two files: the config lives in configuration_tiny.ts.
import { TinyConfig } from './configuration_tiny.js';
export { TinyConfig };
export class TinyForCausalLM {
  constructor(readonly config: TinyConfig) {}
}
