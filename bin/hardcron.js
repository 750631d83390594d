#!/usr/bin/env node
// The `hardcron` command: runs the TypeScript sources through tsx's loader.
import { register } from 'tsx/esm/api';

// Grafast's production mode (no development checks, and no notice about the variable).
process.env.GRAPHILE_ENV ??= 'production';
register();
const { main } = await import('../server/cli/main.ts');
// Exit explicitly: libraries may hook 'beforeExit' and would otherwise decide the exit code.
process.exit(await main(process.argv.slice(2)));
