export class TinyConfig {
  hidden_size = 128;
}
