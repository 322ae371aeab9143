// An exporter refusing a graph it cannot translate faithfully (the CLI reports it as an error, exit 1).
export class ExportError extends Error {
  override name = 'ExportError';
}
