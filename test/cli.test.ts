// The wasmnet command as users run it: flags, logs, the relay, and a clean SIGTERM.
import { expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestClient } from "./helpers/client.ts";
import { spawnServer } from "./helpers/spawn.ts";
import { echoServer } from "./helpers/targets.ts";
import { waitFor } from "./helpers/wait.ts";
import pkg from "../package.json" with { type: "json" };

const cli = join(import.meta.dir, "../src/cli.ts");
const run = (args: string[], env: Record<string, string> = {}) =>
  Bun.spawnSync([process.execPath, cli, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });

test("--version and -v print the package version", () => {
  for (const flag of ["--version", "-v"]) {
    const r = run([flag]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toStartWith(pkg.version);
  }
});

test("--help lists every option", () => {
  const out = run(["--help"]).stdout.toString();
  for (const opt of ["--host", "--port", "--policy", "--max-bandwidth-mbps", "--pool-idle-secs", "--pool-per-key", "--tls-ca", "--log-level"]) expect(out).toContain(opt);
});

test("bad flag values fail with a message and exit 2", () => {
  const r = run(["--log-level", "loud", "--port", "0"]);
  expect(r.exitCode).toBe(2);
  expect(r.stderr.toString()).toContain("--log-level");
  const p = run(["--port", "70000"]);
  expect(p.exitCode).toBe(2);
  expect(p.stderr.toString()).toContain("--port");
  const f = run(["--policy", "/nonexistent/policy.toml", "--port", "0"]);
  expect(f.exitCode).toBe(2);
  expect(f.stderr.toString()).toContain("/nonexistent/policy.toml");
});

test("integer flags take whole numbers only: decimals, exponents, hex and signs fail with exit 2", () => {
  for (const [flag, value] of [["--port", "1.5"], ["--port", "80.0"], ["--pool-per-key", "1e3"], ["--pool-idle-secs", "0x10"], ["--port", "-1"], ["--port", ""], ["--max-bandwidth-mbps", "2.5"]]) {
    const r = run([flag!, value!]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain(`${flag} must be a whole number`);
    expect(r.stderr.toString()).toContain(`got "${value}"`);
  }
});

test("relays, logs JSON lines, and exits 0 on SIGTERM closing sessions with 1001", async () => {
  const echo = echoServer();
  const child = await spawnServer(["--no-policy"]);
  try {
    const c = await TestClient.open(child.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("via cli") });
    await c.waitBytes(1, 7);
    const closed = new Promise<number>((r) => c.ws.addEventListener("close", (e) => r(e.code)));
    const start = Date.now();
    const code = await child.stop("SIGTERM");
    expect(code).toBe(0);
    // Prompt shutdown is the point (no hanging on open sessions); 10 s is generous for a loaded machine.
    expect(Date.now() - start).toBeLessThan(10_000);
    expect(await closed).toBe(1001);
    for (const line of child.logs().trim().split("\n")) expect(() => JSON.parse(line)).not.toThrow();
    expect(child.logs()).toContain('"msg":"stream end"');
  } finally {
    echo.stop();
  }
});

test("WASMNET_LOG sets the level when --log-level is absent", async () => {
  const child = await spawnServer([], undefined, { ...(process.env as Record<string, string>), WASMNET_LOG: "debug" });
  const c = await TestClient.open(child.wsUrl);
  c.send({ op: "close", id: 77 });
  await c.next(77);
  c.close();
  await waitFor(() => child.logs().includes('"level":"debug"'), { what: "a debug line in the log", detail: child.logs });
  expect(await child.stop()).toBe(0);
  expect(child.logs()).toContain('"level":"debug"');
});

test("/healthz answers 200 while serving", async () => {
  const child = await spawnServer([]);
  const r = await fetch(`${child.url}/healthz`);
  expect(r.status).toBe(200);
  expect(await child.stop("SIGINT")).toBe(0);
});

test("healthcheck exits 0 against a serving server and 1 otherwise", async () => {
  const child = await spawnServer([]);
  const ok = run(["healthcheck", `${child.url}/healthz`]);
  expect(ok.exitCode).toBe(0);
  expect(await child.stop()).toBe(0);
  const down = run(["healthcheck", `${child.url}/healthz`]);
  expect(down.exitCode).toBe(1);
});

test("policy check validates a file and explains each destination", () => {
  const file = join(import.meta.dir, "fixtures/policy.example.toml");
  const r = run(["policy", "check", file, "127.0.0.1:80", "[2606:4700::1111]:443"]);
  const out = r.stdout.toString();
  expect(out).toMatch(/denied/);
  expect(out).toMatch(/nonpublic/);
  expect(out).toMatch(/allowed/);
  expect(r.exitCode).toBe(1); // something was denied
  const bad = run(["policy", "check", "/nonexistent.toml"]);
  expect(bad.exitCode).toBe(2);
});

test("policy check exits 0 when every destination is allowed (FILE is not taken for a destination)", () => {
  const file = join(import.meta.dir, "fixtures/policy.example.toml");
  const r = run(["policy", "check", file, "[2606:4700::1111]:443"]);
  expect(r.stdout.toString()).not.toContain("not a HOST:PORT");
  expect(r.exitCode).toBe(0);
});

test("policy check --profile explains decisions under that profile; an unknown profile exits 2", () => {
  const dir = mkdtempSync(join(tmpdir(), "wasmnet-cli-"));
  const file = join(dir, "policy.toml");
  writeFileSync(file, '[network]\ndeny = ["nonpublic"]\n\n[profiles.web.network]\nallow = ["*:443"]\n[profiles.web.limits]\nmax_sessions_per_identity = 2\n');
  const top = run(["policy", "check", file, "1.1.1.1:22"]);
  expect(top.stdout.toString()).toContain("profiles: web");
  expect(top.exitCode).toBe(0);
  const web = run(["policy", "check", file, "--profile", "web", "1.1.1.1:443", "1.1.1.1:22", "127.0.0.1:443"]);
  const out = web.stdout.toString();
  expect(out).toContain("profile: web");
  expect(out).toContain("limits.max_sessions_per_identity: 2");
  expect(out).toContain('allowed 1.1.1.1:443: rule "*:443"');
  expect(out).toContain('denied  1.1.1.1:22: rule "default": no allow entry matches 1.1.1.1:22');
  expect(out).toContain('denied  127.0.0.1:443: rule "nonpublic"');
  expect(web.exitCode).toBe(1);
  const nope = run(["policy", "check", "--profile", "nope", file, "1.1.1.1:443"]);
  expect(nope.exitCode).toBe(2);
  expect(nope.stderr.toString()).toContain('--profile: unknown profile "nope" (profiles: web)');
  expect(nope.stdout.toString()).toBe("");
});

test("policy check --token verifies the token with the file's [auth] keys and explains decisions under its profile and allow list", async () => {
  const { createToken } = await import("../src/auth/issue.ts");
  const dir = mkdtempSync(join(tmpdir(), "wasmnet-cli-"));
  const secret = new TextEncoder().encode("policy-check-token-secret-0123456789abcdef");
  writeFileSync(join(dir, "secret.key"), secret);
  const file = join(dir, "policy.toml");
  writeFileSync(file, '[network]\ndeny = ["nonpublic"]\n[auth]\naudience = "wasmnet"\nhs256_secret_file = "secret.key"\n[profiles.web.network]\nallow = ["*:443"]\n');
  const token = await createToken({ secret, sub: "ada", aud: "wasmnet", ttlSecs: 300, profile: "web", allow: ["1.1.1.1:443"] });
  const r = run(["policy", "check", file, "--token", token, "1.1.1.1:443", "8.8.8.8:443", "1.1.1.1:22"]);
  const out = r.stdout.toString();
  expect(out).toContain('token: sub "ada", profile web, allow ["1.1.1.1:443"]');
  expect(out).toContain("allowed 1.1.1.1:443");
  expect(out).toMatch(/denied  8\.8\.8\.8:443: rule "token allow"/);
  expect(out).toMatch(/denied  1\.1\.1\.1:22: rule "default"/);
  expect(out).not.toContain(token.split(".")[2]!);
  expect(r.exitCode).toBe(1);
  const forged = run(["policy", "check", file, "--token", token.slice(0, -2) + "AA", "1.1.1.1:443"]);
  expect(forged.exitCode).toBe(2);
  expect(forged.stderr.toString()).toContain("--token: refused (401)");
});

test("SIGHUP reloads the policy file: a valid one applies to new opens, an invalid one keeps the running policy", async () => {
  const dir = mkdtempSync(join(tmpdir(), "wasmnet-cli-"));
  const file = join(dir, "policy.toml");
  const echo = echoServer();
  writeFileSync(file, '[network]\ndeny = []\nallow = ["*"]\n');
  const child = await spawnServer(["--policy", file]);
  try {
    const c = await TestClient.open(child.wsUrl);
    expect((await c.connect(1, "127.0.0.1", echo.port)).ev).toBe("connected");
    writeFileSync(file, `[network]\ndeny = ["127.0.0.1:${echo.port}"]\nallow = ["*"]\n`);
    child.proc.kill("SIGHUP");
    await waitFor(() => child.logs().includes('"msg":"policy reloaded"'), "the reload log line");
    expect((await c.connect(2, "127.0.0.1", echo.port)).ev).toBe("denied");
    writeFileSync(file, "[network\n");
    child.proc.kill("SIGHUP");
    await waitFor(() => child.logs().includes("policy reload failed; the running policy stays"), "the failed reload's log line");
    expect((await c.connect(3, "127.0.0.1", echo.port)).ev).toBe("denied");
    c.send({ op: "send", id: 1, data: new TextEncoder().encode("open streams go on") });
    await c.waitBytes(1, 18);
    c.close();
  } finally {
    echo.stop();
    expect(await child.stop()).toBe(0);
  }
});
