import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The dashboard, built into web/dist and served by the GraphQL server at /dashboard/. Nothing is
 * inlined as a data: URL and no font or script comes from elsewhere: the server's CSP allows its
 * own origin only. `npx vite --config web/vite.config.ts` serves it for development, passing
 * /graphql (websockets too) to a running `npm start`.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/dashboard/',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    proxy: { '/graphql': { target: 'http://127.0.0.1:5678', ws: true } },
  },
});
