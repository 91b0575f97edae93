// The version printed by --version; the build (scripts/build.ts) may stamp the commit in.
import pkg from "../package.json" with { type: "json" };

declare const WASMNET_COMMIT: string | undefined;

export const VERSION: string = pkg.version;
export const COMMIT: string | null = typeof WASMNET_COMMIT === "string" ? WASMNET_COMMIT : null;
export const VERSION_LINE = COMMIT ? `${VERSION} (${COMMIT})` : VERSION;
