// The npm package, as a user gets it: `npm pack` (which runs `prepare`, building client/dist),
// the tarball installed into an empty folder with `npm install <tgz>`, then `bunx wasmnet`
// (bun from this repository's node_modules/.bin) and the installed bin serving /healthz, the
// browser client and a relay to a loopback echo server. The tarball must hold what the package
// needs (src/ without tests, client/dist, README) and nothing else.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { BUN, REPO, echoTarget, healthz, relaySmoke, startWasmnet, tempDir } from "./helpers/release.ts";

const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { name: string; version: string };
const work = tempDir("package");
const app = join(work, "app");
const BIN_PATH = `${join(REPO, "node_modules/.bin")}:/usr/local/bin:/usr/bin:/bin`;
const echo = echoTarget();

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}
let packed: Packed;
let installLog = "";
let installCode = -1;

function run(cmd: string[], cwd: string, env: Record<string, string | undefined> = process.env) {
  const p = Bun.spawnSync(cmd, { cwd, env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

beforeAll(() => {
  // `npm pack` runs `prepare` first; its output precedes the JSON on stdout.
  const p = run(["npm", "pack", "--json", "--pack-destination", work], REPO);
  if (p.code !== 0) throw new Error(`npm pack failed:\n${p.out}\n${p.err}`);
  const json = p.out.slice(p.out.search(/^\[/m));
  packed = (JSON.parse(json) as Packed[])[0]!;
  // An empty folder; the dependencies come from the npm cache or the registry.
  Bun.spawnSync(["mkdir", "-p", app]);
  const i = run(["npm", "install", join(work, packed.filename), "--no-audit", "--no-fund", "--prefer-offline"], app, { ...process.env, PATH: BIN_PATH });
  installCode = i.code;
  installLog = i.out + i.err;
}, 180_000);

afterAll(() => {
  echo.stop();
  rmSync(work, { recursive: true, force: true });
});

/** Every file under `dir` (relative to the repository), recursively. */
function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(REPO, dir), { withFileTypes: true })) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

describe("npm pack", () => {
  test("ships src/ without tests, client/dist and the README — nothing else", () => {
    const paths = packed.files.map((f) => f.path).sort();
    const expected = [
      "package.json",
      ...["README.md", "LICENSE", "LICENSE.md"].filter((f) => existsSync(join(REPO, f))),
      "client/dist/wasmnet-client.d.ts",
      "client/dist/wasmnet-client.js",
      ...walk("src").filter((f) => !/\.(test|spec)\.ts$/.test(f)),
    ].sort();
    expect(paths).toEqual(expected);
    for (const bad of [/^test\//, /fixtures/, /\.(test|spec)\.ts$/, /^scripts\//, /^client\/src\//, /^dist\//, /^node_modules\//, /^\.ci\//, /bunfig\.toml$/, /\.env$/]) {
      expect(paths.filter((p) => bad.test(p))).toEqual([]);
    }
    // What package.json points at is in the tarball.
    for (const f of ["src/cli.ts", "src/index.ts", "client/dist/wasmnet-client.js", "client/dist/wasmnet-client.d.ts"]) expect(paths).toContain(f);
    expect(readFileSync(join(REPO, "src/cli.ts"), "utf8")).toStartWith("#!/usr/bin/env bun\n");
  });

  test("is small; report its size", () => {
    const onDisk = statSync(join(work, packed.filename)).size;
    console.log(`packed ${packed.filename}: ${onDisk} bytes (${(onDisk / 1024).toFixed(1)} KiB), unpacked ${packed.unpackedSize} bytes, ${packed.files.length} files`);
    expect(onDisk).toBe(packed.size);
    expect(onDisk).toBeLessThan(1024 * 1024);
  });
});

describe("installed from the tarball into an empty folder", () => {
  test("npm install succeeds and installs only the runtime dependencies", () => {
    if (installCode !== 0) console.error(installLog);
    expect(installCode).toBe(0);
    const mods = readdirSync(join(app, "node_modules")).filter((n) => !n.startsWith("."));
    expect(mods.sort()).toEqual(["citty", "ipaddr.js", "jose", "smol-toml", "wasmnet"]);
    expect(existsSync(join(app, "node_modules/wasmnet/test"))).toBe(false);
  });

  test("`bunx wasmnet --version` runs the installed package, offline", () => {
    // An empty Bun cache and an unreachable registry: bunx must use node_modules/.bin/wasmnet.
    const env = {
      PATH: BIN_PATH,
      HOME: work,
      BUN_INSTALL_CACHE_DIR: join(work, "empty-bun-cache"),
      NPM_CONFIG_REGISTRY: "http://127.0.0.1:9/",
    };
    const r = run(["bunx", "wasmnet", "--version"], app, env);
    expect(r.err).toBe("");
    expect(r.out).toBe(`${pkg.version}\n`);
    expect(r.code).toBe(0);
    // And the same through npm's bin link.
    expect(run([join(app, "node_modules/.bin/wasmnet"), "--version"], app, env).out).toBe(`${pkg.version}\n`);
  });

  test("the installed bin serves /healthz, the browser client and a relay", async () => {
    const srv = await startWasmnet([join(app, "node_modules/.bin/wasmnet"), "--host", "127.0.0.1", "--port", "0", "--no-policy"], {
      cwd: app,
      env: { PATH: BIN_PATH, HOME: work },
    });
    try {
      expect(await healthz(srv.port)).toEqual([200, "ok"]);
      const js = await fetch(`http://127.0.0.1:${srv.port}/wasmnet-client.js`);
      expect(js.status).toBe(200);
      expect(await js.text()).toBe(readFileSync(join(app, "node_modules/wasmnet/client/dist/wasmnet-client.js"), "utf8"));
      expect(await relaySmoke(srv.port, echo.port)).toStartWith("wasmnet smoke ");
    } finally {
      expect(await srv.stop()).toBe(0);
    }
  }, 30_000);

  test("the library entry and the ./client export import from the installed package", () => {
    const script =
      'const w = await import("wasmnet"); const c = await import("wasmnet/client");' +
      "console.log(typeof w.createServer, typeof w.wasmnet, typeof c.WasmnetClient);";
    const r = run([BUN, "-e", script], app, { PATH: BIN_PATH, HOME: work });
    expect(r.err).toBe("");
    expect(r.out).toBe("function function function\n");
    // The resolved modules are the installed copies, not this repository's.
    const where = run([BUN, "-e", 'console.log(import.meta.resolve("wasmnet"))'], app, { PATH: BIN_PATH, HOME: work }).out.trim();
    expect(relative(app, new URL(where).pathname)).toBe("node_modules/wasmnet/src/index.ts");
  });
});
