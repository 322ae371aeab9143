// A custom llm for the golden case: its shapes are llama's.
export class MyLlama {}
