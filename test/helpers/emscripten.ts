// Emscripten for the POSIX-sockets tests: compile a C program once per (source, flags, emcc
// version) into a cache directory under the OS temp dir, serve the output from a
// cross-origin-isolated page (COOP/COEP), which pthreads need for SharedArrayBuffer, and run
// the posix-client fixture in a browser tab. Also the emcc line of examples/emscripten/README.md.
// Whether emcc is here (skip, or fail where CI requires it) is decided by helpers/components.ts:
// `needing("emcc")`.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { openPage, type Browser } from "./browser.ts";
import { component } from "./components.ts";
import { waitFor } from "./wait.ts";

export const FIXTURES = join(import.meta.dir, "../fixtures/posix");
export const EXAMPLE_DIR = join(import.meta.dir, "../../examples/emscripten");

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

/** test/fixtures/posix/posix-client.c, built for the bridge with the fixture's shell page. */
export function compilePosixClient(): Compiled {
  const shell = join(FIXTURES, "shell.html");
  return compileOnce(join(FIXTURES, "posix-client.c"), [...POSIX_SOCKETS_FLAGS, "--shell-file", shell], { inputs: [shell] });
}

/** The program's stdout lines so far (the fixture's shell page keeps them in window.posixLines). */
export type ProgramLines = () => Promise<string[]>;

/**
 * Loads the posix-client page with `args` against the bridge at `bridge` (a ws:// URL) and
 * returns its lines once it printed DONE, with the page's errors. When it prints
 * "LISTENING <port>" (the listen check), `onListening` serves it before the wait for DONE.
 */
export async function runPosixProgram(
  browser: Browser,
  page: PageServer,
  bridge: string,
  args: Record<string, string>,
  onListening?: (port: number, lines: ProgramLines) => Promise<void>,
): Promise<{ lines: string[]; problems: string[] }> {
  const query = new URLSearchParams({ bridge, ...args });
  const { page: tab, problems } = await openPage(browser, `${page.url}?${query}`);
  const lines: ProgramLines = () => tab.evaluate(() => (window as unknown as { posixLines: string[] }).posixLines);
  try {
    if (onListening) {
      let port = 0;
      await waitFor(
        async () => {
          const l = await lines();
          port = Number(l.find((x) => x.startsWith("LISTENING "))?.slice(10) ?? 0);
          return port > 0 || l.includes("DONE");
        },
        { what: "the program to listen", timeoutMs: 45_000, detail: () => "" },
      );
      if (port > 0) await onListening(port, lines);
    }
    await waitFor(async () => (await lines()).includes("DONE"), { what: "the program to print DONE", timeoutMs: 45_000 });
  } catch (e) {
    throw new Error(`${String(e)}\nlines: ${JSON.stringify(await lines().catch(() => []))}\nproblems: ${JSON.stringify(problems.errors)}`);
  }
  const out = await lines();
  await tab.close();
  return { lines: out, problems: problems.errors };
}

/** examples/emscripten/README.md's `emcc http-and-dns.c …` command, continuation lines joined, split into words. */
export function readmeEmccCommand(): string[] {
  const readme = readFileSync(join(EXAMPLE_DIR, "README.md"), "utf8").replace(/\\\n\s*/g, " ");
  const line = readme.split("\n").find((l) => l.trim().startsWith("emcc http-and-dns.c"));
  if (!line) throw new Error("examples/emscripten/README.md has no `emcc http-and-dns.c` line");
  return line.trim().split(/\s+/);
}

/** The flags of that command (between the source and -o), shell.html made absolute. */
export function readmeEmccFlags(words = readmeEmccCommand()): string[] {
  const o = words.indexOf("-o");
  return words.slice(2, o < 0 ? undefined : o).map((w) => (w === "shell.html" ? join(EXAMPLE_DIR, "shell.html") : w));
}
