// Exports MyLlm; MyLlmConfig comes from a sibling file.
export * from './config.js';
export class MyLlm {}
