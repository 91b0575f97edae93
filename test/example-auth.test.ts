// examples/auth: its app server runs as a child process; a user logs in, the page's token request
// gets a token, and a wasmnet server started with the example's own policy.toml (its key path,
// origin and issuer pointed at this run) admits the client holding that token: identity and
// profile as the app signed them, and the profile's rules applied.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmnetClient, WasmnetError } from "../client/src/index.ts";
import { generateKeys } from "../src/auth/issue.ts";
import { startServer } from "./helpers/server.ts";
import { freePort } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";

const root = join(import.meta.dir, "..");
const example = join(root, "examples/auth");

let dir: string;
let app: Subprocess<"ignore", "pipe", "pipe">;
let appOrigin = "";
let appOut = "";
let wasmnetSrv: Awaited<ReturnType<typeof startServer>>;
const wasmnetPort = freePort();

/**
 * Client options that send an Origin header, as the app's page in a browser would: on the
 * WebSocket and on the GET the client makes after a refusal (a browser's cross-origin GET carries
 * Origin; Bun's fetch does not on its own).
 */
function fromPage(origin: string) {
  return {
    WebSocket: class extends WebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, { protocols, headers: { origin } } as unknown as string[]);
      }
    },
    fetch: ((url: string | URL | Request, init?: RequestInit) => fetch(url, { ...init, headers: { origin } })) as typeof fetch,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "wasmnet-example-auth-"));
  const keys = await generateKeys({ alg: "EdDSA", outDir: join(dir, "keys") });
  app = Bun.spawn([process.execPath, join(example, "app.ts"), "--port", "0", "--key", keys.privateFile, "--wasmnet", `ws://127.0.0.1:${wasmnetPort}/`], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  void (async () => {
    for await (const chunk of app.stdout) appOut += new TextDecoder().decode(chunk);
  })();
  await waitFor(() => /^app: (http:\/\/127\.0\.0\.1:\d+)\//m.test(appOut), {
    what: "the app server's start-up line",
    timeoutMs: 15_000,
    failIf: () => app.exitCode !== null && `the app exited with ${app.exitCode}`,
    detail: () => appOut,
  });
  appOrigin = /^app: (http:\/\/127\.0\.0\.1:\d+)\//m.exec(appOut)![1]!;
  // The example's policy as shipped, with this run's app origin and key file.
  const policy = readFileSync(join(example, "policy.toml"), "utf8")
    .replaceAll("http://127.0.0.1:8080", appOrigin)
    .replace('jwks_file = "keys/public.jwks.json"', `jwks_file = ${JSON.stringify(keys.publicFile)}`);
  expect(policy).toContain(keys.publicFile);
  writeFileSync(join(dir, "policy.toml"), policy);
  wasmnetSrv = await startServer({ port: wasmnetPort, policy: join(dir, "policy.toml") });
}, 30_000);

afterAll(async () => {
  if (app && app.exitCode === null) app.kill();
  await app?.exited;
  await wasmnetSrv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function logIn(user: string, password: string): Promise<Response> {
  return fetch(`${appOrigin}/login`, { method: "POST", body: new URLSearchParams({ user, password }), redirect: "manual" });
}

test("no token without logging in; a wrong password is refused", async () => {
  expect((await fetch(`${appOrigin}/token`)).status).toBe(401);
  expect(await (await fetch(`${appOrigin}/`)).text()).toContain('action="/login"');
  expect((await logIn("ada", "wrong")).status).toBe(401);
});

test("a logged-in page gets a short-lived token that the wasmnet server admits with the app's identity and profile", async () => {
  const login = await logIn("ada", "demo");
  expect(login.status).toBe(303);
  const cookie = /^(sid=[0-9a-f]{32})/.exec(login.headers.get("set-cookie") ?? "")?.[1];
  expect(cookie).toBeDefined();
  const page = await (await fetch(`${appOrigin}/`, { headers: { cookie: cookie! } })).text();
  expect(page).toContain('src="/page.js"');
  const res = await fetch(`${appOrigin}/token`, { headers: { cookie: cookie! } });
  expect(res.status).toBe(200);
  expect(res.headers.get("cache-control")).toBe("no-store");
  const { token, wasmnet, user } = (await res.json()) as { token: string; wasmnet: string; user: string };
  expect([wasmnet, user]).toEqual([`ws://127.0.0.1:${wasmnetPort}/`, "ada"]);
  const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
  expect(claims).toMatchObject({ sub: "ada", aud: "wasmnet", iss: appOrigin, wasmnet: { profile: "demo" } });
  expect(claims.exp - claims.iat).toBeLessThanOrEqual(15 * 60);

  const c = new WasmnetClient(wasmnet, { token, ...fromPage(appOrigin) });
  await c.ready();
  expect([c.identity, c.profile]).toEqual(["ada", "demo"]);
  // The demo profile allows 127.0.0.1:7777 only: anything else is the policy's refusal.
  const id = c.openAndSend("127.0.0.1", 7778, "outside the profile");
  const err = await new Promise<WasmnetError | undefined>((r) => c.onClose(id, r));
  expect(err?.code).toBe("EPOLICY");
  c.disconnect();

  // The same token from another website is refused: the policy's allowed_origins.
  const other = new WasmnetClient(wasmnet, { token, ...fromPage("https://elsewhere.example") });
  await expect(other.ready()).rejects.toMatchObject({ code: "EREFUSED", status: 403 });
  // And without a token there is no session at all.
  const anonymous = new WasmnetClient(wasmnet, fromPage(appOrigin));
  await expect(anonymous.ready()).rejects.toMatchObject({ code: "EAUTH", status: 401, message: "a token is required" });
});
