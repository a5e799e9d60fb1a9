import { defineConfig } from 'vite';

// The Go server (make run) listens here; `npm run dev` proxies the API to it.
const backend = process.env.SUBSYS_URL ?? 'http://127.0.0.1:7070';

export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    // scripts/clean-dist.mjs empties dist/ but keeps .gitkeep (git tracks it so
    // that go:embed works without a build); Vite's own emptying would delete it.
    emptyOutDir: false,
    assetsDir: 'assets',
    target: 'es2022',
    // One chunk for the app, one for xterm: no inline scripts (the CSP forbids them).
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1024,
  },
  server: {
    port: 5173,
    strictPort: true,
    // The Host header is kept (localhost:5173): the server accepts localhost and
    // compares Origin with Host, which then match.
    proxy: {
      '/api': { target: backend, ws: true },
    },
  },
});
