// Serves this example page on http://127.0.0.1:8080/ (bun examples/browser/serve.ts [port]).
const dir = import.meta.dir;
const port = Number(process.argv[2] ?? 8080);
const files: Record<string, string> = { "/": "index.html", "/index.html": "index.html", "/app.js": "app.js" };
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/favicon.ico") return new Response(null, { status: 204 });
    const name = files[path];
    return name ? new Response(Bun.file(`${dir}/${name}`)) : new Response("not found\n", { status: 404 });
  },
});
console.log(`example page: http://127.0.0.1:${server.port}/`);
