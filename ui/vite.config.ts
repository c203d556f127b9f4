import { defineConfig } from "vite";

// Built into the Python package; the gateway serves it at /ui/ (see serve_app/http/console.py).
export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "../serve_app/http/ui/dist",
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0, // no data: URLs for scripts or fonts
    sourcemap: false,
    target: "es2022",
  },
});
