// The component gate: a test whose outside program is missing is reported skipped, never passed,
// and fails instead (naming the program) where CI or WASMNET_REQUIRE requires it. Each case runs
// a small fixture as its own `bun test` with PATH emptied, so PATH-found programs are missing.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const emptyPath = mkdtempSync(join(tmpdir(), "wasmnet-empty-path-"));
afterAll(() => rmSync(emptyPath, { recursive: true, force: true }));

function run(env: Record<string, string>): { code: number; out: string } {
  const r = Bun.spawnSync([process.execPath, "test", "./test/fixtures/needing.ts"], {
    cwd: join(import.meta.dir, ".."),
    env: { HOME: process.env.HOME ?? "/tmp", PATH: emptyPath, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

const count = (out: string, what: "pass" | "fail" | "skip") => Number(new RegExp(`^ *(\\d+) ${what}$`, "m").exec(out)?.[1] ?? 0);

test("missing and not required: skipped (and said loudly), not passed", () => {
  const r = run({ NEEDS: "redis-server" });
  expect(r.code).toBe(0);
  expect(count(r.out, "pass")).toBe(1);
  expect(count(r.out, "skip")).toBeGreaterThanOrEqual(2);
  expect(count(r.out, "fail")).toBe(0);
  expect(r.out).toContain("SKIPPED (not passed): tests needing redis-server");
});

test("missing and required by CI: fails naming the component", () => {
  const r = run({ NEEDS: "redis-server", CI: "true" });
  expect(r.code).not.toBe(0);
  expect(count(r.out, "fail")).toBe(2);
  expect(count(r.out, "skip")).toBe(0);
  expect(r.out).toContain("required component missing: redis-server");
  expect(r.out).toContain("required because CI=true");
});

test("CI=false is not CI", () => {
  const r = run({ NEEDS: "openssl", CI: "false" });
  expect(count(r.out, "fail")).toBe(0);
  expect(count(r.out, "skip")).toBeGreaterThanOrEqual(2);
});

test("missing and named in WASMNET_REQUIRE: fails naming the component", () => {
  const r = run({ NEEDS: "python3,openssl", WASMNET_REQUIRE: "openssl" });
  expect(r.code).not.toBe(0);
  expect(count(r.out, "fail")).toBe(2);
  expect(r.out).toContain("required component missing: openssl");
  expect(r.out).toContain("WASMNET_REQUIRE=openssl");
});

test("an optional component (qemu-arm64) still skips under CI", () => {
  const r = run({ NEEDS: "qemu-arm64", CI: "true" });
  expect(r.code).toBe(0);
  expect(count(r.out, "fail")).toBe(0);
  expect(count(r.out, "skip")).toBeGreaterThanOrEqual(2);
  expect(r.out).toContain("SKIPPED (not passed): tests needing qemu-arm64");
});

test("a component that is here: the tests run", () => {
  // chromium is found by its fixed path, not PATH; skip the check where it is really missing.
  const here = existsSync("/usr/bin/chromium");
  const r = run({ NEEDS: "chromium", CI: "true" });
  if (here) {
    expect(r.code).toBe(0);
    expect(count(r.out, "pass")).toBe(3);
  } else expect(count(r.out, "fail")).toBe(2);
});
