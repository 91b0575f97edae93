// `npm run build`: the browser client, then one self-contained executable at dist/wasmnet.
//
//   bun scripts/build.ts [--target bun-linux-arm64] [--outfile dist/wasmnet-linux-arm64]
//
// The client bundle and the commit are inlined with --define, so the binary needs no file
// beside it; .env and bunfig.toml auto-loading are off so the working directory cannot change
// how a deployed server behaves (docs/bun.md#compile-time-autoload-flags).
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

const root = resolve(import.meta.dir, "..");

async function run(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { cwd: root, stdout: "pipe", stderr: "inherit" });
  const out = await new Response(p.stdout).text();
  if ((await p.exited) !== 0) throw new Error(`${cmd.join(" ")} failed`);
  return out;
}

export async function build(opts: { target?: string; outfile?: string; skipClient?: boolean } = {}): Promise<string> {
  if (!opts.skipClient) await run([process.execPath, "scripts/build-client.ts"]);
  const clientJs = readFileSync(join(root, "client/dist/wasmnet-client.js"), "utf8");
  let commit = "unknown";
  try {
    commit = (await run(["git", "rev-parse", "--short", "HEAD"])).trim();
  } catch {}
  const outfile = opts.outfile ?? "dist/wasmnet";
  const cmd = [
    process.execPath, "build", "src/cli.ts", "--compile", "--minify", "--sourcemap",
    "--outfile", outfile,
    "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig",
    "--define", `WASMNET_CLIENT_JS=${JSON.stringify(clientJs)}`,
    "--define", `WASMNET_COMMIT=${JSON.stringify(commit)}`,
  ];
  if (opts.target) cmd.push(`--target=${opts.target}`);
  await run(cmd);
  return join(root, outfile);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Bun.argv.slice(2),
    options: { target: { type: "string" }, outfile: { type: "string" }, "skip-client": { type: "boolean" } },
  });
  const out = await build({ target: values.target, outfile: values.outfile, skipClient: values["skip-client"] });
  console.log(`built ${out}`);
}
