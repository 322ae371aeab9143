#!/usr/bin/env node
// Entry point of the `pipec` command: the compiled CLI lives in dist/ (built by `npm install`).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`pipec: internal error: ${e && e.message}\n`);
    process.exitCode = 3;
  },
);
