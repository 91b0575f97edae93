// Serves an Emscripten build on http://127.0.0.1:8080/ with the headers that make the page
// cross-origin isolated, which pthreads (SharedArrayBuffer) need:
//   bun examples/emscripten/serve.ts [build dir, default examples/emscripten/build] [port]
import { readdirSync } from "node:fs";
import { join, resolve } from "node:path";

const dir = resolve(process.argv[2] ?? join(import.meta.dir, "build"));
const port = Number(process.argv[3] ?? 8080);
const files = new Set(readdirSync(dir));
const headers = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req) {
    const name = decodeURIComponent(new URL(req.url).pathname.slice(1)) || "http-and-dns.html";
    // Only the files the build produced, by name: no paths, no traversal.
    if (!files.has(name)) return new Response("not found\n", { status: 404, headers });
    return new Response(Bun.file(join(dir, name)), { headers });
  },
});
console.log(`serving ${dir} on http://127.0.0.1:${server.port}/`);
