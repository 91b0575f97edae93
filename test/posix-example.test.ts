// examples/emscripten builds with exactly the emcc command line its README shows (the README's
// line is read from the file, so the two cannot drift apart). Without emcc the test is skipped
// (where CI requires emcc, it fails). Running it against wasmnet is the /posix/ endpoint's test.
import { describe, expect } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { needing } from "./helpers/components.ts";
import { compileOnce } from "./helpers/emscripten.ts";

const emcc = needing("emcc");
const EXAMPLE = join(import.meta.dir, "../examples/emscripten");

/** The README's `emcc http-and-dns.c …` command, continuation lines joined, split into words. */
function readmeCommand(): string[] {
  const readme = readFileSync(join(EXAMPLE, "README.md"), "utf8").replace(/\\\n\s*/g, " ");
  const line = readme.split("\n").find((l) => l.trim().startsWith("emcc http-and-dns.c"));
  if (!line) throw new Error("README.md has no `emcc http-and-dns.c` line");
  return line.trim().split(/\s+/);
}

describe("examples/emscripten", () => {
  emcc.test("compiles with the README's command line into a page, its script, wasm and worker", () => {
    const words = readmeCommand();
    expect(words.slice(0, 2)).toEqual(["emcc", "http-and-dns.c"]);
    const o = words.indexOf("-o");
    expect(words[o + 1]).toBe("build/http-and-dns.html");
    // Same flags; paths made absolute, output into the test cache instead of build/.
    const flags = words.slice(2, o).map((w) => (w === "shell.html" ? join(EXAMPLE, "shell.html") : w));
    expect(flags).toContain("-sPROXY_POSIX_SOCKETS");
    const built = compileOnce(join(EXAMPLE, "http-and-dns.c"), flags, { inputs: [join(EXAMPLE, "shell.html")] });
    for (const ext of ["html", "js", "wasm", "worker.js"]) expect(existsSync(join(built.dir, `http-and-dns.${ext}`))).toBe(true);
  }, 120_000);
});
