// The layering of docs/architecture.md#layers, checked from the source: every import goes to
// the same layer or one below, and no files import each other in a circle.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../src");

/** Rank of each part of src/: an import may only go to an equal or lower rank. */
const RANK: Record<string, number> = {
  "constants.ts": 0,
  "log.ts": 0,
  "version.ts": 0,
  protocol: 1,
  policy: 1,
  limits: 1,
  auth: 2,
  net: 3,
  session: 4,
  adapters: 5,
  server: 6,
  cluster: 7,
  "cli.ts": 8,
  "index.ts": 8,
};
const rankOf = (file: string) => {
  const top = relative(SRC, file).split("/")[0]!;
  return RANK[top] ?? RANK[top.replace(/^cli-.*\.ts$/, "cli.ts")];
};

const files = (function walk(d: string): string[] {
  return readdirSync(d).flatMap((n) => {
    const p = join(d, n);
    return statSync(p).isDirectory() ? walk(p) : /\.ts$/.test(n) && !n.endsWith(".d.ts") ? [p] : [];
  });
})(SRC);

const imports = new Map<string, string[]>();
for (const f of files) {
  const text = readFileSync(f, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g)) {
    const target = resolve(dirname(f), m[1] ?? m[2]!);
    if (files.includes(target)) out.push(target);
  }
  imports.set(f, out);
}

test("every file of src/ has a layer", () => {
  expect(files.filter((f) => rankOf(f) === undefined).map((f) => relative(SRC, f))).toEqual([]);
});

test("no import runs up a layer", () => {
  const up: string[] = [];
  for (const [f, targets] of imports)
    for (const t of targets) if (rankOf(t)! > rankOf(f)!) up.push(`${relative(SRC, f)} -> ${relative(SRC, t)}`);
  expect(up).toEqual([]);
});

test("no import cycles between files", () => {
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, "open");
    stack.push(f);
    for (const t of imports.get(f) ?? []) {
      if (state.get(t) === "open") cycles.push(stack.slice(stack.indexOf(t)).map((x) => relative(SRC, x)).join(" -> "));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of files) if (!state.has(f)) visit(f);
  expect(cycles).toEqual([]);
});
