// Imports a helper that does not exist, and a module outside the program's folder.
export * from './missing_helper.js';
export * from '../../custom-modules/models/my_llm.js';
export class MyLlm {}
