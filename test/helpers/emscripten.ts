// Emscripten for the POSIX-sockets tests: compile a C program once per (source, flags, emcc
// version) into a cache directory under the OS temp dir, and serve the output from a
// cross-origin-isolated page (COOP/COEP), which pthreads need for SharedArrayBuffer.
// Whether emcc is here (skip, or fail where CI requires it) is decided by helpers/components.ts:
// `needing("emcc")`.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { component } from "./components.ts";

export const FIXTURES = join(import.meta.dir, "../fixtures/posix");

/** The flags that make a program's BSD sockets go over the WebSocket bridge. */
export const POSIX_SOCKETS_FLAGS = ["-lwebsocket", "-sPROXY_POSIX_SOCKETS", "-pthread", "-sPROXY_TO_PTHREAD"];

function emcc(): string {
  const c = component("emcc");
  if (!c.path) throw new Error(c.why);
  return c.path;
}

let versionLine: string | null = null;
function emccVersion(): string {
  if (versionLine === null) {
    const r = Bun.spawnSync([emcc(), "--version"], { stdout: "pipe", stderr: "pipe" });
    versionLine = r.stdout.toString().split("\n")[0] ?? "";
  }
  return versionLine;
}

export interface Compiled {
  /** Directory holding the output files. */
  dir: string;
  /** The main output file's name (e.g. posix-client.html). */
  main: string;
  /** True when this call ran emcc, false when the cache had it. */
  built: boolean;
  /** Seconds emcc took (0 from the cache). */
  seconds: number;
}

/**
 * Compiles `source` (a file under test/fixtures/posix) with `flags` into `<name>.<ext>`;
 * `inputs` are other files the build reads (e.g. a shell page) and so belong in the cache key.
 * The cache lives in <tmpdir>/wasmnet-emcc/<sha256>; a finished build is moved there in one
 * rename, so parallel test files never see half an output.
 */
export function compileOnce(source: string, flags: string[], opts: { ext?: "html" | "js"; inputs?: string[] } = {}): Compiled {
  const ext = opts.ext ?? "html";
  const name = basename(source).replace(/\.c$/, "");
  const hash = createHash("sha256");
  hash.update(emccVersion()).update("\0").update(flags.join("\0")).update("\0").update(ext);
  for (const f of [source, ...(opts.inputs ?? [])]) hash.update("\0").update(readFileSync(f));
  const root = join(tmpdir(), "wasmnet-emcc");
  const dir = join(root, hash.digest("hex").slice(0, 24));
  const main = `${name}.${ext}`;
  if (existsSync(join(dir, main))) return { dir, main, built: false, seconds: 0 };
  mkdirSync(root, { recursive: true });
  const work = mkdtempSync(join(root, "build-"));
  const started = performance.now();
  const r = Bun.spawnSync([emcc(), source, ...flags, "-o", join(work, main)], { stdout: "pipe", stderr: "pipe" });
  const seconds = (performance.now() - started) / 1000;
  if (r.exitCode !== 0) {
    rmSync(work, { recursive: true, force: true });
    throw new Error(`emcc ${basename(source)} failed (${r.exitCode}):\n${r.stderr.toString()}${r.stdout.toString()}`);
  }
  try {
    renameSync(work, dir);
  } catch {
    // Another process finished the same build first; its output is identical.
    rmSync(work, { recursive: true, force: true });
  }
  return { dir, main, built: true, seconds };
}

const CONTENT_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  wasm: "application/wasm",
};

export interface PageServer {
  /** http://127.0.0.1:<port>/<main> */
  url: string;
  port: number;
  stop(): void;
}

/**
 * Serves the files of a compiled program from 127.0.0.1 with the headers that make the page
 * cross-origin isolated (so SharedArrayBuffer, and with it pthreads, work). Only the files the
 * build produced are served, looked up by name.
 */
export function servePage(compiled: Compiled): PageServer {
  const files = new Set(readdirSync(compiled.dir));
  const isolation = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const name = decodeURIComponent(new URL(req.url).pathname.slice(1));
      if (!files.has(name)) return new Response("not found", { status: 404, headers: isolation });
      const type = CONTENT_TYPES[name.split(".").pop() ?? ""] ?? "application/octet-stream";
      return new Response(Bun.file(join(compiled.dir, name)), { headers: { ...isolation, "Content-Type": type } });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/${compiled.main}`, port: server.port!, stop: () => server.stop(true) };
}
