// examples/emscripten builds with exactly the emcc command line its README shows (the README's
// line is read from the file, so the two cannot drift apart). Without emcc the test is skipped
// (where CI requires emcc, it fails). Running it against wasmnet is the /posix/ endpoint's test.
import { describe, expect } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { needing } from "./helpers/components.ts";
import { compileOnce, EXAMPLE_DIR, readmeEmccCommand, readmeEmccFlags } from "./helpers/emscripten.ts";

const emcc = needing("emcc");

describe("examples/emscripten", () => {
  emcc.test("compiles with the README's command line into a page, its script, wasm and worker", () => {
    const words = readmeEmccCommand();
    expect(words.slice(0, 2)).toEqual(["emcc", "http-and-dns.c"]);
    const o = words.indexOf("-o");
    expect(words[o + 1]).toBe("build/http-and-dns.html");
    // Same flags; paths made absolute, output into the test cache instead of build/.
    const flags = readmeEmccFlags(words);
    expect(flags).toContain("-sPROXY_POSIX_SOCKETS");
    const built = compileOnce(join(EXAMPLE_DIR, "http-and-dns.c"), flags, { inputs: [join(EXAMPLE_DIR, "shell.html")] });
    for (const ext of ["html", "js", "wasm", "worker.js"]) expect(existsSync(join(built.dir, `http-and-dns.${ext}`))).toBe(true);
  }, 120_000);
});
