// The browser client served at GET /wasmnet-client.js. In the compiled binary the bundle is
// inlined at build time (scripts/build.ts defines WASMNET_CLIENT_JS); from source it is read
// from client/dist, built by `npm install` (prepare) or `npm run build:client`.
declare const WASMNET_CLIENT_JS: string | undefined;

const HEADERS = {
  "content-type": "text/javascript; charset=utf-8",
  "cache-control": "no-cache",
  // A page on another origin imports the client from its wasmnet server.
  "access-control-allow-origin": "*",
};

export async function clientScriptResponse(): Promise<Response> {
  if (typeof WASMNET_CLIENT_JS === "string") return new Response(WASMNET_CLIENT_JS, { headers: HEADERS });
  const file = Bun.file(new URL("../../client/dist/wasmnet-client.js", import.meta.url));
  if (await file.exists()) return new Response(file, { headers: HEADERS });
  return new Response("client not built: run `npm run build:client`\n", { status: 404 });
}
