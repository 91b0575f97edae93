import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { totalmem, tmpdir } from "node:os";
import { join } from "node:path";
import { defaultMaxMemoryMb, memoryBudgetMb, parseCgroupLimit, readContainerMemoryLimit } from "../src/policy/memory-budget.ts";

const GIB = 1024 ** 3;

describe("memoryBudgetMb: half of the lower of machine and container", () => {
  test.each([
    ["no container limit", 16 * GIB, null, 8192],
    ["container lower than the machine", 16 * GIB, 2 * GIB, 1024],
    ["container limit above the machine (v1 'unlimited')", 8 * GIB, 9223372036854771712, 4096],
    ["odd sizes round down", 3 * 1024 * 1024 + 1, null, 1],
    ["never 0", 1024, null, 1],
  ] as const)("%s", (_, machine, container, mb) => {
    expect(memoryBudgetMb(machine, container)).toBe(mb);
  });
});

describe("parseCgroupLimit", () => {
  test.each([
    ["max\n", null],
    ["536870912\n", 536870912],
    ["9223372036854771712\n", 9223372036854771712],
    ["", null],
    ["0\n", null],
    ["-1\n", null],
  ] as const)("%j", (text, bytes) => {
    expect(parseCgroupLimit(text)).toBe(bytes);
  });
});

describe("readContainerMemoryLimit", () => {
  const root = () => mkdtempSync(join(tmpdir(), "wasmnet-cgroup-"));
  test("cgroup v2 memory.max", () => {
    const r = root();
    writeFileSync(join(r, "memory.max"), "1073741824\n");
    expect(readContainerMemoryLimit(r)).toBe(GIB);
  });
  test("cgroup v2 'max' is no limit, and v1 is not consulted then", () => {
    const r = root();
    writeFileSync(join(r, "memory.max"), "max\n");
    mkdirSync(join(r, "memory"));
    writeFileSync(join(r, "memory", "memory.limit_in_bytes"), "1073741824\n");
    expect(readContainerMemoryLimit(r)).toBeNull();
  });
  test("cgroup v1 memory.limit_in_bytes", () => {
    const r = root();
    mkdirSync(join(r, "memory"));
    writeFileSync(join(r, "memory", "memory.limit_in_bytes"), "268435456\n");
    expect(readContainerMemoryLimit(r)).toBe(256 * 1024 * 1024);
  });
  test("neither file: no limit", () => {
    expect(readContainerMemoryLimit(root())).toBeNull();
  });
});

test("defaultMaxMemoryMb on this machine is half its memory or less", () => {
  const mb = defaultMaxMemoryMb();
  expect(mb).toBe(memoryBudgetMb(totalmem(), readContainerMemoryLimit()));
  expect(mb).toBeGreaterThanOrEqual(1);
  expect(mb).toBeLessThanOrEqual(Math.floor(totalmem() / 2 / 1024 / 1024));
});
