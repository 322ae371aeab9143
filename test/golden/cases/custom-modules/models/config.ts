export interface MyLlmConfig { hidden_size: number }
export const defaultConfig: MyLlmConfig = { hidden_size: 128 };
