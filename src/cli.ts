#!/usr/bin/env bun
// The wasmnet command (README.md#cli): run the server, or `wasmnet policy check FILE [HOST:PORT …]`.
import { defineCommand, runMain } from "citty";
import { createLogger, isLogLevel, type LogLevel } from "./log.ts";
import { UnknownProfileError, checkDestinations, formatPolicy } from "./policy/check.ts";
import { loadPolicyFile, PolicyFileError } from "./policy/load.ts";
import type { Entry } from "./policy/entry.ts";
import { loadKeyRing } from "./auth/keys.ts";
import { verifyToken } from "./auth/verify.ts";
import { serve } from "./cli-serve.ts";
import { resolveTarget, systemResolver } from "./net/resolve.ts";
import { DEFAULT_HOST, DEFAULT_PORT } from "./constants.ts";
import { VERSION_LINE } from "./version.ts";
import { tokenCommand } from "./cli-token.ts";
import { fail } from "./cli-fail.ts";


// Digits only: Number() would also take "1.5", "1e3", "0x10" and " 8 ", none of which an
// operator means as a port or a count.
function intArg(name: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < lo || n > hi) fail(`--${name} must be a whole number ${lo}-${hi}, got "${v}"`);
  return n;
}

const policyCheck = defineCommand({
  meta: { name: "check", description: "Validate a policy file and show what it decides for destinations" },
  args: {
    file: { type: "positional", description: "policy TOML file", required: true },
    profile: { type: "string", description: "explain decisions under [profiles.NAME]" },
    token: { type: "string", description: "explain decisions for this token (verified with the file's [auth] keys): its profile and allow list" },
  },
  async run({ args }) {
    let cfg;
    try {
      cfg = loadPolicyFile(String(args.file));
    } catch (e) {
      fail(e instanceof PolicyFileError ? e.message : String(e));
    }
    const view: { profile: string | null; tokenAllow?: Entry[] | null } = { profile: typeof args.profile === "string" ? args.profile : null };
    if (typeof args.token === "string") {
      let keys;
      try {
        keys = await loadKeyRing(cfg.auth);
      } catch (e) {
        fail(`--token: ${(e as Error).message}`);
      }
      const v = await verifyToken(args.token, cfg.auth, keys);
      if (!v.ok) fail(`--token: refused (${v.status}): ${v.description}`);
      if (view.profile !== null && view.profile !== v.profile) fail(`--token carries profile ${JSON.stringify(v.profile)}, not --profile ${view.profile}`);
      view.profile = v.profile;
      view.tokenAllow = v.allow;
      process.stdout.write(`token: sub ${JSON.stringify(v.identity)}, profile ${v.profile ?? "(top level)"}, allow ${v.allow === null ? "(no narrowing)" : JSON.stringify(v.allow.map((e) => e.text))}\n`);
    }
    let settings: string;
    try {
      settings = formatPolicy(cfg, view);
    } catch (e) {
      fail(e instanceof UnknownProfileError ? `--profile: ${e.message}` : String(e));
    }
    process.stdout.write(settings + "\n");
    const dests = (args._ as string[]).slice(1); // [0] is FILE
    if (dests.length === 0) return;
    const resolve = async (name: string) => (await resolveTarget(name, systemResolver, 5000)).addrs;
    const { lines, anyDenied } = await checkDestinations(cfg, dests, resolve, view);
    process.stdout.write(lines.join("\n") + "\n");
    if (anyDenied) process.exitCode = 1;
  },
});

const healthcheck = defineCommand({
  meta: { name: "healthcheck", description: "Probe a wasmnet server's /healthz: exit 0 if it answers 200 (for container HEALTHCHECKs)" },
  args: {
    url: { type: "positional", description: `default http://127.0.0.1:${DEFAULT_PORT}/healthz`, required: false },
  },
  async run({ args }) {
    const url = typeof args.url === "string" && args.url ? args.url : `http://127.0.0.1:${DEFAULT_PORT}/healthz`;
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
      process.stdout.write(`${url}: ${r.status}\n`);
      process.exit(r.status === 200 ? 0 : 1);
    } catch (e) {
      process.stdout.write(`${url}: ${(e as Error).message}\n`);
      process.exit(1);
    }
  },
});

const main = defineCommand({
  meta: { name: "wasmnet", version: VERSION_LINE, description: "Browser WebAssembly to the real network: TCP, TLS, UDP and DNS over one WebSocket" },
  args: {
    host: { type: "string", alias: "H", description: `listen address (default ${DEFAULT_HOST})` },
    port: { type: "string", alias: "p", description: `listen port (default ${DEFAULT_PORT})` },
    policy: { type: "string", description: "policy TOML file (--no-policy: allow everything)" },
    "max-bandwidth-mbps": { type: "string", description: "per-session limit, overrides the policy file" },
    "pool-idle-secs": { type: "string", description: "enable pooling with this idle timeout" },
    "pool-per-key": { type: "string", description: "ready connections per target (default 8)" },
    "tls-ca": { type: "string", description: "extra CA certificates (PEM) for connect_tls" },
    "log-level": { type: "string", description: "error|warn|info|debug (or WASMNET_LOG)" },
    "drain-secs": { type: "string", description: "how long open sessions may go on after SIGTERM (default 5)" },
    workers: { type: "string", description: "worker processes sharing the port: N or auto = the CPU count (default: [server] workers, else 1)" },
    redis: { type: "string", description: "count cluster-wide limits in Redis: redis://host:6379/0" },
  },
  subCommands: {
    policy: defineCommand({ meta: { name: "policy", description: "Policy file tools" }, subCommands: { check: policyCheck } }),
    healthcheck,
    token: tokenCommand,
  },
  async run({ args, rawArgs }) {
    if (rawArgs[0] === "policy" || rawArgs[0] === "healthcheck" || rawArgs[0] === "token") return; // handled by the sub-command
    const level = args["log-level"] ?? process.env.WASMNET_LOG ?? "info";
    if (!isLogLevel(level)) fail(`--log-level must be error, warn, info or debug, got "${level}"`);
    const log = createLogger(level as LogLevel);
    // citty turns --no-policy into policy === false.
    const noPolicy = (args.policy as unknown) === false;
    const policyFile = typeof args.policy === "string" && args.policy !== "" ? args.policy : undefined;
    const workers = args.workers === undefined ? undefined : args.workers === "auto" ? "auto" : intArg("workers", args.workers, 1, 256);
    await serve(
      {
        hostname: args.host ?? DEFAULT_HOST,
        port: intArg("port", args.port, 0, 65535) ?? DEFAULT_PORT,
        noPolicy,
        policy: policyFile,
        maxBandwidthMbps: intArg("max-bandwidth-mbps", args["max-bandwidth-mbps"], 0, 1e6),
        poolIdleSecs: intArg("pool-idle-secs", args["pool-idle-secs"], 0, 86400),
        poolPerKey: intArg("pool-per-key", args["pool-per-key"], 1, 1000),
        tlsCaFile: args["tls-ca"],
        drainSecs: intArg("drain-secs", args["drain-secs"], 0, 3600),
        redisUrl: args.redis,
        logger: log,
      },
      { workers, fail },
    );
  },
});

await runMain(main);
