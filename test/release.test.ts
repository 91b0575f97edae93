// `npm run release` (scripts/release.ts), end to end: it builds linux-x64 and one cross target
// (linux-arm64, whose runtime comes from the npm registry), writes a SHA256SUMS that the system's
// `sha256sum -c` accepts, and the binaries work with an EMPTY environment in an EMPTY working
// directory that holds a hostile .env and bunfig.toml: --version, /healthz and a relay through
// them to a loopback echo server. linux-arm64 runs under qemu-aarch64 where it is installed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkExecutable, parseTargets, TARGETS, verifySums } from "../scripts/release.ts";
import { ARM64_SYSROOT, component, needing } from "./helpers/components.ts";
import { BUN, REPO, compiledVersionRe, echoTarget, healthz, hostileDir, relaySmoke, startWasmnet, tempDir } from "./helpers/release.ts";

// Without qemu-aarch64 and the arm64 C library the linux-arm64 binary is built and checksummed
// but not run (skipped, loudly; optional even in CI).
const arm64 = needing("qemu-arm64");
const QEMU = component("qemu-arm64").path;
const onLinuxX64 = process.platform === "linux" && process.arch === "x64";

const out = tempDir("release");
let releaseRun: { code: number; stdout: string; stderr: string };
const echo = echoTarget();

beforeAll(async () => {
  const p = Bun.spawn([BUN, "scripts/release.ts", "--targets", "linux-x64,linux-arm64", "--outdir", out], {
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  releaseRun = { code: await p.exited, stdout, stderr };
  if (releaseRun.code !== 0) console.error(stdout, stderr);
}, 300_000);

afterAll(() => {
  echo.stop();
  rmSync(out, { recursive: true, force: true });
});

describe("scripts/release.ts", () => {
  test("builds exactly the requested targets, prints a size table and a verified SHA256SUMS", async () => {
    expect(releaseRun.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["SHA256SUMS", "wasmnet-linux-arm64", "wasmnet-linux-x64"]);
    expect(releaseRun.stdout).toMatch(/^linux-x64\s+wasmnet-linux-x64\s+\d{8,}\s+\d+\.\d\s/m);
    expect(releaseRun.stdout).toMatch(/^linux-arm64\s+wasmnet-linux-arm64\s+\d{8,}\s+\d+\.\d\s/m);
    expect(releaseRun.stdout).toContain("SHA256SUMS verified: 2 file(s)");
    console.log(releaseRun.stdout.slice(releaseRun.stdout.indexOf("target ")));
    // The system's own tool agrees with the file (independent of the script's verifier).
    const check = Bun.spawnSync(["sha256sum", "-c", "--strict", "SHA256SUMS"], { cwd: out });
    expect(check.stdout.toString()).toBe("wasmnet-linux-x64: OK\nwasmnet-linux-arm64: OK\n");
    expect(check.exitCode).toBe(0);
    expect(await verifySums(out, ["wasmnet-linux-x64", "wasmnet-linux-arm64"])).toEqual([]);
  });

  test("each binary is an ELF executable for its CPU and libc", () => {
    expect(checkExecutable(join(out, "wasmnet-linux-x64"), TARGETS["linux-x64"]!)).toBeNull();
    expect(checkExecutable(join(out, "wasmnet-linux-arm64"), TARGETS["linux-arm64"]!)).toBeNull();
    // …and the checker is not a rubber stamp.
    expect(checkExecutable(join(out, "wasmnet-linux-x64"), TARGETS["linux-arm64"]!)).toContain("ELF machine 0x3e");
    expect(checkExecutable(join(out, "wasmnet-linux-arm64"), TARGETS["linux-arm64-musl"]!)).toContain("does not match musl");
    expect(checkExecutable(join(out, "SHA256SUMS"), TARGETS["windows-x64"]!)).toContain("not a PE file");
  });

  test("the verifier catches a changed, missing, unlisted or extra file", async () => {
    const d = tempDir("sums");
    try {
      writeFileSync(join(d, "a"), "alpha\n");
      writeFileSync(join(d, "b"), "beta\n");
      const sum = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");
      writeFileSync(join(d, "SHA256SUMS"), `${sum("alpha\n")}  a\n${sum("beta\n")}  b\n`);
      expect(await verifySums(d, ["a", "b"])).toEqual([]);
      writeFileSync(join(d, "b"), "beta!\n");
      expect(await verifySums(d, ["a", "b"])).toEqual(["b: checksum mismatch"]);
      rmSync(join(d, "a"));
      expect(await verifySums(d, ["a", "b", "c"])).toEqual(["a: missing", "b: checksum mismatch", "c: not listed"]);
      expect(await verifySums(d, ["b"])).toContain("a: listed but not built");
      writeFileSync(join(d, "SHA256SUMS"), "not a checksum line\n");
      expect(await verifySums(d)).toEqual(['malformed line: "not a checksum line"']);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("--targets rejects unknown names; the default is all six platforms", () => {
    expect(parseTargets(undefined)).toEqual(["linux-x64", "linux-arm64", "linux-x64-musl", "linux-arm64-musl", "darwin-arm64", "windows-x64"]);
    expect(parseTargets("linux-arm64, linux-x64,linux-arm64")).toEqual(["linux-arm64", "linux-x64"]);
    expect(() => parseTargets("linux-x64,plan9-mips")).toThrow('unknown target "plan9-mips"');
    expect(() => parseTargets(",")).toThrow("--targets is empty");
  });

  test("a runtime that cannot be fetched fails the release loudly and leaves no SHA256SUMS", async () => {
    // An empty runtime cache and an npm registry on a closed loopback port: nothing leaves the machine.
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const d = tempDir("nofetch");
    try {
      const p = Bun.spawn([BUN, "scripts/release.ts", "--targets", "linux-arm64", "--outdir", join(d, "out"), "--cache-dir", join(d, "cache")], {
        cwd: REPO,
        env: { ...process.env, npm_config_registry: `http://127.0.0.1:${port}/`, npm_config_fetch_retries: "0", npm_config_cache: join(d, "npm-cache") },
        stdout: "pipe",
        stderr: "pipe",
      });
      const stderr = await new Response(p.stderr).text();
      expect(await p.exited).toBe(1);
      expect(stderr).toContain("release FAILED: cannot fetch the Bun runtime for linux-arm64 (@oven/bun-linux-aarch64@");
      expect(stderr).toContain("use --targets");
      expect(existsSync(join(d, "out", "SHA256SUMS"))).toBe(false);
      expect(existsSync(join(d, "out", "wasmnet-linux-arm64"))).toBe(false);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }, 60_000);
});

/** Runs the release binary `cmd` with `env -i` in a hostile empty directory: --version, /healthz, relay. */
async function runEverywhere(prefix: string[]) {
  const { dir, listing } = hostileDir();
  try {
    const v = Bun.spawnSync(["env", "-i", ...prefix, "--version"], { cwd: dir, env: {} });
    expect(v.stderr.toString()).toBe("");
    expect(v.stdout.toString()).toMatch(compiledVersionRe());

    const srv = await startWasmnet(["env", "-i", ...prefix, "--host", "127.0.0.1", "--port", "0", "--no-policy"], { cwd: dir, timeoutMs: 60_000 });
    try {
      // .env's WASMNET_LOG was not read: the server started, and at the default level (info).
      expect(srv.log()).toContain('"level":"info","msg":"listening"');
      expect(await healthz(srv.port)).toEqual([200, "ok"]);
      expect(await relaySmoke(srv.port, echo.port, { timeoutMs: 30_000 })).toStartWith("wasmnet smoke ");
    } finally {
      expect(await srv.stop()).toBe(0);
    }
    // bunfig.toml's preload never ran, and nothing was written into the working directory.
    expect(readdirSync(dir).sort()).toEqual(listing);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("the release binaries, with an empty environment in a hostile empty directory", () => {
  test("control: a binary built WITHOUT the no-autoload flags does load that .env and bunfig.toml", async () => {
    const d = tempDir("control");
    const { dir } = hostileDir();
    try {
      writeFileSync(join(d, "probe.ts"), 'console.log(process.env.WASMNET_LOG ?? "-", (globalThis as any).__pwned ?? "-");\n');
      const b = Bun.spawnSync([BUN, "build", join(d, "probe.ts"), "--compile", "--outfile", join(d, "probe")], { cwd: d, stdout: "pipe", stderr: "pipe" });
      expect(b.exitCode).toBe(0);
      const r = Bun.spawnSync(["env", "-i", join(d, "probe")], { cwd: dir, env: {} });
      expect(r.stdout.toString()).toBe("dotenv-was-loaded bunfig-preload-ran\n");
      expect(existsSync(join(dir, "PWNED"))).toBe(true);
    } finally {
      rmSync(d, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test.skipIf(!onLinuxX64)("linux-x64: --version, /healthz and a relay; .env and bunfig.toml ignored", async () => {
    expect(releaseRun.code).toBe(0);
    await runEverywhere([join(out, "wasmnet-linux-x64")]);
  }, 60_000);

  arm64.test("linux-arm64 under qemu-aarch64: --version, /healthz and a relay; .env and bunfig.toml ignored", async () => {
    expect(releaseRun.code).toBe(0);
    await runEverywhere([QEMU!, "-L", ARM64_SYSROOT, join(out, "wasmnet-linux-arm64")]);
  }, 120_000);
});
