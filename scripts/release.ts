// `npm run release`: one self-contained wasmnet executable per platform, plus SHA256SUMS.
//
//   bun scripts/release.ts [--targets linux-x64,linux-arm64] [--outdir dist/release]
//
// Writes <outdir>/wasmnet-<os>-<arch>[.exe] for every target (all of TARGETS by default),
// then <outdir>/SHA256SUMS in `sha256sum` format, reads it back and checks every line, and
// prints a table of sizes. Each binary is compiled by scripts/build.ts (the client bundle is
// built once, for the first target; the others pass --skip-client).
//
// Cross targets need the Bun runtime of that platform. It comes from the npm registry through
// `npm pack @oven/bun-<platform>@<bun version>` (npm checks the tarball against the registry's
// integrity hash and honours the user's npm config: registry mirror, proxy, auth), is unpacked
// into a cache directory and handed to `bun build --compile` through BUN_INSTALL_CACHE_DIR
// (docs/bun.md#cross-compiling-fetches-the-target-runtime). A target whose runtime cannot be fetched fails the whole release, loudly; use
// --targets to build only what you can. Every output is checked to be an executable of the
// target's format and CPU (and libc, for Linux) before it is listed in SHA256SUMS.
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, openSync, readSync, closeSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";

const root = resolve(import.meta.dir, "..");

export interface Target {
  /** `bun build --compile --target=` value. */
  bun: string;
  /** npm package that carries this platform's Bun runtime. */
  npm: string;
  /** Path of the runtime inside that package. */
  bin: string;
  /** Output file suffix. */
  ext: "" | ".exe";
  /** What the executable must look like. */
  format: "elf" | "macho" | "pe";
  cpu: "x64" | "arm64";
  libc?: "glibc" | "musl";
}

export const TARGETS: Record<string, Target> = {
  "linux-x64": { bun: "bun-linux-x64", npm: "@oven/bun-linux-x64", bin: "package/bin/bun", ext: "", format: "elf", cpu: "x64", libc: "glibc" },
  "linux-arm64": { bun: "bun-linux-arm64", npm: "@oven/bun-linux-aarch64", bin: "package/bin/bun", ext: "", format: "elf", cpu: "arm64", libc: "glibc" },
  "linux-x64-musl": { bun: "bun-linux-x64-musl", npm: "@oven/bun-linux-x64-musl", bin: "package/bin/bun", ext: "", format: "elf", cpu: "x64", libc: "musl" },
  "linux-arm64-musl": { bun: "bun-linux-arm64-musl", npm: "@oven/bun-linux-aarch64-musl", bin: "package/bin/bun", ext: "", format: "elf", cpu: "arm64", libc: "musl" },
  "darwin-arm64": { bun: "bun-darwin-arm64", npm: "@oven/bun-darwin-aarch64", bin: "package/bin/bun", ext: "", format: "macho", cpu: "arm64" },
  "windows-x64": { bun: "bun-windows-x64", npm: "@oven/bun-windows-x64", bin: "package/bin/bun.exe", ext: ".exe", format: "pe", cpu: "x64" },
};

export const DEFAULT_OUTDIR = join(root, "dist/release");
export const DEFAULT_CACHE = join(root, "node_modules/.cache/wasmnet-release");

export class ReleaseError extends Error {}

export function artifactName(target: string): string {
  const t = TARGETS[target];
  if (!t) throw new ReleaseError(`unknown target "${target}"; known: ${Object.keys(TARGETS).join(", ")}`);
  return `wasmnet-${target}${t.ext}`;
}

export function parseTargets(list: string | undefined): string[] {
  if (list === undefined) return Object.keys(TARGETS);
  const names = list.split(",").map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new ReleaseError("--targets is empty");
  for (const n of names) artifactName(n); // throws on unknown names
  return [...new Set(names)];
}

/** The name Bun gives a downloaded runtime in its install cache: bun-linux-aarch64-v1.4.5. */
function cacheName(t: Target, version: string): string {
  return `${t.npm.replace(/^@oven\//, "")}-v${version}`;
}

/** The target this Bun itself runs on, which `bun build --compile` can produce without a download. */
function hostTarget(): string | null {
  const os = process.platform === "win32" ? "windows" : process.platform;
  let name = `${os}-${process.arch}`;
  if (os === "linux") {
    const glibc = (process as any).report?.getReport?.()?.header?.glibcVersionRuntime;
    if (!glibc) name += "-musl";
  }
  return TARGETS[name] ? name : null;
}

function sh(cmd: string[], cwd: string, env?: Record<string, string | undefined>): { code: number; out: string; err: string } {
  const p = Bun.spawnSync(cmd, { cwd, env: env ?? process.env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, out: p.stdout.toString(), err: p.stderr.toString() };
}

/**
 * Makes sure `<cacheDir>/<cacheName>` holds the Bun runtime for `target`, fetching it from the
 * npm registry with `npm pack` if it is not there yet.
 */
export function fetchRuntime(target: string, cacheDir: string, version: string): string {
  const t = TARGETS[target]!;
  const dest = join(cacheDir, cacheName(t, version));
  if (existsSync(dest) && checkExecutable(dest, t) === null) return dest;
  mkdirSync(cacheDir, { recursive: true });
  const spec = `${t.npm}@${version}`;
  const tmp = mkdtempSync(join(cacheDir, ".fetch-"));
  try {
    const pack = sh(["npm", "pack", spec, "--json", "--pack-destination", tmp], tmp);
    if (pack.code !== 0) {
      throw new ReleaseError(
        `cannot fetch the Bun runtime for ${target} (${spec}) from the npm registry:\n` +
          `${pack.err.trim() || pack.out.trim()}\n(use --targets to build only the targets you can fetch)`,
      );
    }
    const info = JSON.parse(pack.out)[0] as { filename: string; integrity: string };
    const tgz = join(tmp, info.filename);
    const untar = sh(["tar", "-xzf", tgz, t.bin], tmp);
    if (untar.code !== 0) throw new ReleaseError(`${spec}: ${t.bin} is not in the package: ${untar.err.trim()}`);
    const bin = join(tmp, t.bin);
    const bad = checkExecutable(bin, t);
    if (bad) throw new ReleaseError(`${spec}: ${t.bin} is not a ${target} executable (${bad})`);
    chmodSync(bin, 0o755);
    renameSync(bin, dest);
    console.log(`fetched ${spec} (${info.integrity.slice(0, 23)}…) → ${dest}`);
    return dest;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Reads the first `n` bytes of a file. */
function head(path: string, n: number): Buffer {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * null if `path` is an executable of the target's format, CPU and libc; otherwise what is wrong.
 * ELF: e_machine 0x3e (x86-64) / 0xb7 (aarch64), and the program interpreter names ld-musl for
 * musl builds. Mach-O: 64-bit magic and cputype. PE: "MZ", "PE\0\0" and the COFF machine.
 */
export function checkExecutable(path: string, t: Target): string | null {
  if (!existsSync(path)) return "missing";
  const b = head(path, 64 * 1024);
  if (b.length < 64) return "too short";
  if (t.format === "elf") {
    if (b.readUInt32BE(0) !== 0x7f454c46) return "not an ELF file";
    const machine = b.readUInt16LE(18);
    const want = t.cpu === "x64" ? 0x3e : 0xb7;
    if (machine !== want) return `ELF machine 0x${machine.toString(16)}, want 0x${want.toString(16)}`;
    const text = b.toString("latin1");
    const interp = text.match(/\/lib(?:64)?\/ld-[\w.-]+\.so[.\d]*/)?.[0];
    if (!interp) return "no program interpreter (not a dynamically linked executable)";
    const musl = interp.includes("ld-musl");
    if (musl !== (t.libc === "musl")) return `interpreter ${interp} does not match ${t.libc}`;
    return null;
  }
  if (t.format === "macho") {
    if (b.readUInt32LE(0) !== 0xfeedfacf) return "not a 64-bit Mach-O file";
    const cpu = b.readUInt32LE(4);
    const want = t.cpu === "arm64" ? 0x0100000c : 0x01000007;
    return cpu === want ? null : `Mach-O cputype 0x${cpu.toString(16)}, want 0x${want.toString(16)}`;
  }
  if (b.toString("latin1", 0, 2) !== "MZ") return "not a PE file (no MZ)";
  const pe = b.readUInt32LE(0x3c);
  if (pe + 6 > b.length || b.readUInt32BE(pe) !== 0x50450000) return "not a PE file (no PE header)";
  const machine = b.readUInt16LE(pe + 4);
  const want = t.cpu === "x64" ? 0x8664 : 0xaa64;
  return machine === want ? null : `PE machine 0x${machine.toString(16)}, want 0x${want.toString(16)}`;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}

/** Re-reads SHA256SUMS in `dir` and checks every listed file; returns the problems found. */
export async function verifySums(dir: string, expectNames?: string[]): Promise<string[]> {
  const problems: string[] = [];
  const text = readFileSync(join(dir, "SHA256SUMS"), "utf8");
  const seen: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const m = line.match(/^([0-9a-f]{64}) [ *](.+)$/);
    if (!m) {
      problems.push(`malformed line: ${JSON.stringify(line)}`);
      continue;
    }
    const [, sum, name] = m as unknown as [string, string, string];
    seen.push(name);
    if (name.includes("/") || !existsSync(join(dir, name))) problems.push(`${name}: missing`);
    else if ((await sha256File(join(dir, name))) !== sum) problems.push(`${name}: checksum mismatch`);
  }
  if (expectNames) {
    for (const n of expectNames) if (!seen.includes(n)) problems.push(`${n}: not listed`);
    for (const n of seen) if (!expectNames.includes(n)) problems.push(`${n}: listed but not built`);
  }
  return problems;
}

export interface Artifact {
  target: string;
  file: string;
  bytes: number;
  sha256: string;
}

export interface ReleaseOptions {
  targets?: string[];
  outdir?: string;
  cacheDir?: string;
}

export async function release(opts: ReleaseOptions = {}): Promise<Artifact[]> {
  const targets = opts.targets ?? Object.keys(TARGETS);
  const outdir = resolve(opts.outdir ?? DEFAULT_OUTDIR);
  const cacheDir = resolve(opts.cacheDir ?? DEFAULT_CACHE);
  const version = Bun.version;
  const host = hostTarget();

  // Fetch every runtime first, so a target that cannot be fetched fails before anything is built.
  for (const target of targets) if (target !== host) fetchRuntime(target, cacheDir, version);

  // Start from a clean slate: stale binaries must not end up next to (or in) a new SHA256SUMS.
  mkdirSync(outdir, { recursive: true });
  for (const f of readdirSync(outdir)) {
    if (f === "SHA256SUMS" || f.startsWith("wasmnet-")) rmSync(join(outdir, f), { force: true });
  }

  const env = { ...process.env, BUN_INSTALL_CACHE_DIR: cacheDir };
  const artifacts: Artifact[] = [];
  for (const [i, target] of targets.entries()) {
    const t = TARGETS[target]!;
    const file = join(outdir, artifactName(target));
    // scripts/build.ts's CLI runs its build(); it is spawned (rather than imported) so that
    // BUN_INSTALL_CACHE_DIR reaches the `bun build` it starts.
    const cmd = [process.execPath, join(root, "scripts/build.ts"), "--target", t.bun, "--outfile", file];
    if (i > 0) cmd.push("--skip-client");
    const started = performance.now();
    const p = Bun.spawn(cmd, { cwd: root, env, stdout: "pipe", stderr: "inherit" });
    await new Response(p.stdout).text();
    if ((await p.exited) !== 0) throw new ReleaseError(`building ${target} failed (see the output above)`);
    // The source map is embedded in the binary (--sourcemap); the copy bun writes beside it is not shipped.
    for (const map of [`${file}.map`, `${file.replace(/\.exe$/, "")}.map`]) rmSync(map, { force: true });
    const bad = checkExecutable(file, t);
    if (bad) throw new ReleaseError(`${basename(file)}: ${bad}`);
    const bytes = statSync(file).size;
    artifacts.push({ target, file: basename(file), bytes, sha256: await sha256File(file) });
    console.log(`built ${basename(file)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }

  const sums = artifacts.map((a) => `${a.sha256}  ${a.file}\n`).join("");
  await Bun.write(join(outdir, "SHA256SUMS"), sums);
  const problems = await verifySums(outdir, artifacts.map((a) => a.file));
  if (problems.length) throw new ReleaseError(`SHA256SUMS does not verify:\n  ${problems.join("\n  ")}`);
  return artifacts;
}

export function sizeTable(artifacts: Artifact[]): string {
  const rows = [["target", "file", "bytes", "MiB", "sha256"]];
  for (const a of artifacts) rows.push([a.target, a.file, String(a.bytes), (a.bytes / 2 ** 20).toFixed(1), a.sha256.slice(0, 16) + "…"]);
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 2 || c === 3 ? cell.padStart(w[c]!) : cell.padEnd(w[c]!))).join("  ").trimEnd()).join("\n");
}

if (import.meta.main) {
  try {
    const { values } = parseArgs({
      args: Bun.argv.slice(2),
      options: { targets: { type: "string" }, outdir: { type: "string" }, "cache-dir": { type: "string" } },
    });
    const targets = parseTargets(values.targets);
    const outdir = resolve(values.outdir ?? DEFAULT_OUTDIR);
    const artifacts = await release({ targets, outdir, cacheDir: values["cache-dir"] });
    console.log(`\n${sizeTable(artifacts)}\n\nSHA256SUMS verified: ${artifacts.length} file(s) in ${outdir}`);
  } catch (e) {
    console.error(`\nrelease FAILED: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
