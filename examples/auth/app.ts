// The auth example's app server: a stand-in for your own web app (examples/auth/README.md). It
// logs a user in (any name, the demo password) and hands the logged-in page a short-lived wasmnet
// token for that user, signed with the app's private key; wasmnet checks it with the public key.
// The page then opens its wasmnet session with `new WasmnetClient(url, { token })`.
//
//   bun examples/auth/app.ts [--port 8080] [--key examples/auth/keys/private.jwk.json | --secret-file F]
//                            [--wasmnet ws://127.0.0.1:9000/] [--profile demo] [--ttl-secs 300]
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
// In your own app: `wasmnet token create` does the same from a shell, and any JWT library works
// (claims: sub, aud, iss, exp, and optionally "wasmnet": { "profile": …, "allow": [...] }).
import { createToken } from "../../src/index.ts"; // in your app: from "wasmnet"
import { readHs256Secret } from "../../src/auth/keys.ts";
import { SessionStore } from "./sessions.ts";

const dir = import.meta.dir;
const { values: args } = parseArgs({
  options: {
    port: { type: "string", default: "8080" },
    key: { type: "string" },
    "secret-file": { type: "string" },
    wasmnet: { type: "string", default: "ws://127.0.0.1:9000/" },
    profile: { type: "string", default: "demo" },
    "ttl-secs": { type: "string", default: "300" },
  },
});

// The signing key: a private JWK from `wasmnet token keygen` (EdDSA or ES256), or an HS256 secret
// shared with the server (then [auth] hs256_secret_file points at the same file).
const signing =
  args["secret-file"] !== undefined
    ? { secret: readHs256Secret(args["secret-file"]) }
    : { privateJwk: JSON.parse(readFileSync(args.key ?? join(dir, "keys/private.jwk.json"), "utf8")) };
const ttlSecs = Number(args["ttl-secs"]);

// Demo log-in: any user name with this password. A real app has its own users and sessions.
const DEMO_PASSWORD = "demo";
const USER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const SESSION_SECS = 8 * 3600;
const sessions = new SessionStore({ ttlMs: SESSION_SECS * 1000, maxSessions: 10_000 });

/** The request's session cookie, if it has one. */
function sidOf(req: Request): string | null {
  return /(?:^|;\s*)sid=([0-9a-f]{32})(?:;|$)/.exec(req.headers.get("cookie") ?? "")?.[1] ?? null;
}

const html = (body: string, status = 200, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { "content-type": "text/html; charset=utf-8", ...headers } });

const loginPage = (problem = "") => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wasmnet auth example: log in</title></head>
<body style="font: 15px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto">
  <h1>Log in</h1>
  <p>Any user name; the password is <code>${DEMO_PASSWORD}</code>.</p>
  ${problem ? `<p style="color:#b00020">${problem}</p>` : ""}
  <form method="post" action="/login">
    <label>user <input name="user" value="ada" autocomplete="username" required></label>
    <label>password <input name="password" type="password" autocomplete="current-password" required></label>
    <button>Log in</button>
  </form>
</body></html>`;

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(args.port),
  async fetch(req) {
    const path = new URL(req.url).pathname;
    const sid = sidOf(req);
    const user = sid ? sessions.userOf(sid) : null;
    if (req.method === "POST" && path === "/login") {
      const form = await req.formData();
      const name = String(form.get("user") ?? "");
      if (!USER_NAME.test(name) || form.get("password") !== DEMO_PASSWORD) return html(loginPage("Wrong user name or password."), 401);
      const created = sessions.create(name);
      const cookie = `sid=${created}; Path=/; Max-Age=${SESSION_SECS}; HttpOnly; SameSite=Strict`;
      return new Response(null, { status: 303, headers: { location: "/", "set-cookie": cookie } });
    }
    if (req.method === "POST" && path === "/logout") {
      if (sid) sessions.end(sid); // this session only: anyone may log in under the same demo name
      return new Response(null, { status: 303, headers: { location: "/", "set-cookie": "sid=; Path=/; Max-Age=0" } });
    }
    if (req.method !== "GET") return new Response("method not allowed\n", { status: 405 });
    if (path === "/") return user ? new Response(Bun.file(join(dir, "index.html"))) : html(loginPage());
    if (path === "/page.js") return new Response(Bun.file(join(dir, "page.js")));
    if (path === "/token") {
      // Same-origin only (no CORS headers) and SameSite cookies: another site cannot get a token.
      if (!user) return Response.json({ error: "not logged in" }, { status: 401 });
      const token = await createToken({
        ...signing,
        sub: user,
        profile: args.profile,
        ttlSecs,
        aud: "wasmnet",
        iss: server.url.origin,
      });
      return Response.json({ token, wasmnet: args.wasmnet, user, expiresInSecs: ttlSecs }, { headers: { "cache-control": "no-store" } });
    }
    if (path === "/favicon.ico") return new Response(null, { status: 204 });
    return new Response("not found\n", { status: 404 });
  },
});
console.log(`app: ${server.url.origin}/ (tokens for ${args.wasmnet}, profile ${args.profile}, ${ttlSecs} s)`);
