// The container image without a container engine. The Dockerfile's final stage is `FROM scratch`
// plus the directory deploy/rootfs.sh assembles; this test compiles the binary, runs that same
// script, and starts the binary inside the result the way `docker run --read-only` would: its
// own mount namespace, the root read-only, /proc mounted, /etc/hosts provided, chroot as
// 65532:65532. /healthz answers and a relay (by address and by name) reaches an echo server
// outside the chroot on 127.0.0.1 (chroot shares the network namespace). It also checks the
// Dockerfile still says what the test assumes, and `systemd-analyze verify`s deploy/wasmnet.service.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstatSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { component, needing } from "./helpers/components.ts";
import { BUN, REPO, compiledVersionRe, echoTarget, healthz, relaySmoke, startWasmnet, tempDir, warnSkipped } from "./helpers/release.ts";

// Running the image root needs Linux, root, chroot, unshare and ldd; without them it is skipped.
const image = needing("chroot");
const CHROOT = component("chroot").path;
const UNSHARE = Bun.which("unshare");
const systemd = needing("systemd-analyze");
const SYSTEMD_ANALYZE = component("systemd-analyze").path;

const dockerfile = readFileSync(join(REPO, "Dockerfile"), "utf8");
const stages = dockerfile.split(/^FROM\s+/m).slice(1);
const finalStage = stages.at(-1) ?? "";
const instructions = (stage: string) =>
  stage
    .replace(/\\\n/g, " ")
    .split("\n")
    .filter((l) => l.trim() && !l.trim().startsWith("#"));

const work = tempDir("container");
const bin = join(work, "wasmnet");
const root = join(work, "root");
const echo = echoTarget();
let buildError = "";
/** The image root as deploy/rootfs.sh left it (before the runtime's mount points are added). */
let imageFiles: string[] = [];

beforeAll(() => {
  if (!image.available) return;
  const b = Bun.spawnSync([BUN, "scripts/build.ts", "--outfile", bin], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
  if (b.exitCode !== 0) buildError = `scripts/build.ts failed:\n${b.stdout}\n${b.stderr}`;
  else {
    const r = Bun.spawnSync(["sh", join(REPO, "deploy/rootfs.sh"), bin, root], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) buildError = `deploy/rootfs.sh failed:\n${r.stdout}\n${r.stderr}`;
  }
  if (buildError) return;
  imageFiles = tree(root).filter((p) => !p.endsWith("/"));
  // What the container runtime adds: an /etc/hosts to bind-mount (and its mount point).
  writeFileSync(join(work, "hosts"), "127.0.0.1 localhost\n::1 localhost\n");
  writeFileSync(join(root, "etc/hosts"), "");
}, 120_000);

afterAll(() => {
  echo.stop();
  rmSync(work, { recursive: true, force: true });
});

/** Every path under `dir`, relative, with a trailing / for directories. */
function tree(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const p = `${prefix}/${e.name}`;
    if (e.isDirectory()) out.push(`${p}/`, ...tree(dir, p));
    else out.push(p);
  }
  return out.sort();
}

/**
 * argv that runs `cmd` inside the image root the way a container runtime would: a private mount
 * namespace, the root bind-mounted read-only (docker run --read-only), /proc mounted and
 * /etc/hosts bind-mounted (both are provided by every container runtime), then chroot as the
 * image's USER.
 */
function inImage(cmd: string[]): string[] {
  const script = [
    "set -e",
    'R="$1"; shift',
    'mount --bind "$R" "$R"',
    'mount -o remount,bind,ro "$R"',
    'mount -t proc proc "$R/proc"',
    `mount --bind "${join(work, "hosts")}" "$R/etc/hosts"`,
    `exec "${CHROOT}" --userspec=65532:65532 "$R" "$@"`,
  ].join("\n");
  return [UNSHARE!, "-m", "sh", "-c", script, "sh", root, ...cmd];
}

describe("Dockerfile", () => {
  test("the final stage is scratch + deploy/rootfs.sh's root, non-root, port 9000", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(finalStage).toStartWith("scratch\n");
    const lines = instructions(finalStage).slice(1);
    // Nothing but the assembled root goes into the image.
    expect(lines.filter((l) => /^(COPY|ADD|RUN)\b/.test(l))).toEqual(["COPY --from=build /rootfs/ /"]);
    expect(lines).toContain("USER 65532:65532");
    expect(lines).toContain("EXPOSE 9000");
    expect(lines).toContain('ENTRYPOINT ["/wasmnet"]');
    // The build stage makes /rootfs with the script this test runs, from scripts/build.ts's binary.
    const build = instructions(stages.at(-2)!).join("\n");
    expect(build).toStartWith("node:22-bookworm AS build");
    expect(build).toContain("scripts/build.ts --outfile /out/wasmnet");
    expect(build).toContain("sh deploy/rootfs.sh /out/wasmnet /rootfs");
  });

  test(".dockerignore keeps host-built artefacts (other CPU/libc) and secrets out of the context", () => {
    const ignored = readFileSync(join(REPO, ".dockerignore"), "utf8").split("\n").map((l) => l.trim());
    for (const p of ["node_modules", "dist", "client/dist", ".env"]) expect(ignored).toContain(p);
    expect(ignored).not.toContain(".git"); // --version names the commit
  });
});

describe("the image root filesystem (deploy/rootfs.sh), run with chroot", () => {
  image.test("holds the binary, the loader and ldd's libraries, the CA bundle, passwd, /tmp — and nothing else", () => {
    expect(buildError).toBe("");
    const libs = Bun.spawnSync(["ldd", bin]).stdout.toString().match(/\/\S+/g)!;
    expect(libs.length).toBeGreaterThan(1);
    const files = imageFiles;
    expect(files).toEqual([...new Set(["/wasmnet", "/etc/group", "/etc/passwd", "/etc/nsswitch.conf", "/etc/ssl/certs/ca-certificates.crt", ...libs])].sort());
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).toContain("nonroot:x:65532:65532:");
    expect(statSync(join(root, "tmp")).mode & 0o7777).toBe(0o1777);
    for (const f of files) expect(lstatSync(join(root, f)).isSymbolicLink()).toBe(false);
    const bytes = files.reduce((n, f) => n + statSync(join(root, f)).size, 0);
    const binBytes = statSync(join(root, "wasmnet")).size;
    console.log(
      `image root: ${files.length} files, ${bytes} bytes (${(bytes / 2 ** 20).toFixed(1)} MiB): ` +
        `binary ${binBytes}, libraries + loader + CA bundle + /etc ${bytes - binBytes}`,
    );
  });

  image.test("no shell or other tools: the chroot is real", () => {
    expect(buildError).toBe("");
    const sh = Bun.spawnSync(inImage(["/bin/sh", "-c", "true"]), { stdout: "pipe", stderr: "pipe" });
    expect(sh.exitCode).not.toBe(0);
    expect(sh.stderr.toString()).toContain("No such file or directory");
  });

  image.test("as 65532 on a read-only root: --version, /healthz, relays by address and by name", async () => {
    expect(buildError).toBe("");
    const v = Bun.spawnSync(inImage(["/wasmnet", "--version"]), { env: {}, stdout: "pipe", stderr: "pipe" });
    expect(v.stderr.toString()).toBe("");
    expect(v.stdout.toString()).toMatch(compiledVersionRe());

    const srv = await startWasmnet(inImage(["/wasmnet", "--host", "127.0.0.1", "--port", "0", "--no-policy"]), { cwd: work, env: {} });
    try {
      // The process really is the unprivileged user.
      expect(readFileSync(`/proc/${srv.proc.pid}/status`, "utf8")).toMatch(/^Uid:\t65532\t65532\t65532\t65532$/m);
      expect(readFileSync(`/proc/${srv.proc.pid}/status`, "utf8")).toMatch(/^Gid:\t65532\t65532\t65532\t65532$/m);
      expect(await healthz(srv.port)).toEqual([200, "ok"]);
      expect(await relaySmoke(srv.port, echo.port)).toStartWith("wasmnet smoke ");
      // Name resolution inside the image: /etc/nsswitch.conf + the runtime's /etc/hosts, no NSS modules.
      expect(await relaySmoke(srv.port, echo.port, { addr: "localhost" })).toStartWith("wasmnet smoke ");
    } finally {
      expect(await srv.stop()).toBe(0);
    }
    expect(srv.log()).toContain('"msg":"shutting down","signal":"SIGTERM"');
  }, 60_000);

  const healthcheck = finalStage.match(/^HEALTHCHECK\b(?!\s+NONE)[^\n]*CMD\s+(\[[^\n]*\])/m)?.[1];
  if (!healthcheck) {
    warnSkipped("test/container.test.ts", "the Dockerfile has no HEALTHCHECK CMD (it needs a `wasmnet healthcheck` subcommand), so none is run.");
  }
  (healthcheck ? image.test : test.skip)("the Dockerfile's HEALTHCHECK passes while serving and fails once stopped", async () => {
    const argv = (JSON.parse(healthcheck!) as string[]).map((a) => a.replace(":9000", ":PORT"));
    const srv = await startWasmnet(inImage(["/wasmnet", "--host", "127.0.0.1", "--port", "0", "--no-policy"]), { cwd: work, env: {} });
    const probe = (port: number) => Bun.spawnSync(inImage(argv.map((a) => a.replace(":PORT", `:${port}`))), { env: {} }).exitCode;
    try {
      expect(probe(srv.port)).toBe(0);
    } finally {
      await srv.stop();
    }
    expect(probe(srv.port)).not.toBe(0);
  }, 60_000);
});

describe("deploy/wasmnet.service", () => {
  systemd.test("systemd-analyze verify: no unknown or invalid settings", () => {
    const unit = readFileSync(join(REPO, "deploy/wasmnet.service"), "utf8");
    expect(unit).toContain("ExecStart=/usr/local/bin/wasmnet ");
    // verify needs ExecStart to exist; point it at a real executable, keep everything else.
    const d = tempDir("unit");
    try {
      writeFileSync(join(d, "wasmnet.service"), unit.replace("ExecStart=/usr/local/bin/wasmnet", `ExecStart=${BUN}`));
      const r = Bun.spawnSync([SYSTEMD_ANALYZE!, "verify", join(d, "wasmnet.service")], { stdout: "pipe", stderr: "pipe" });
      expect(r.stderr.toString()).toBe("");
      expect(r.exitCode).toBe(0);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
