#!/usr/bin/env node
// The pipec language server over stdio (the same as `pipec lsp --stdio`).
import { startServer } from '../dist/compiler/lsp/server.js';

startServer();
