// Every relative link in the repository's documents (docs/*.md, README.md) points at a file that
// exists and, with a `#fragment`, at a heading that exists — using GitHub's rules for heading ids,
// since GitHub is where people read these files. External links (http:, mailto:, …) are not
// fetched: the tests stay on loopback.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const documents = [
  "README.md",
  ...readdirSync(join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];

// ---- pure Markdown helpers ----

/** GitHub's heading id (github-slugger): lower-case, drop punctuation except `-` and `_`, spaces → `-`. */
function slug(headingText: string): string {
  return headingText
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** The text GitHub renders for a heading's Markdown: link and image text kept, code ticks and tags dropped. */
function renderedText(markdown: string): string {
  return markdown
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/!?\[([^\]]*)\]\[[^\]]*\]/g, "$1")
    .replace(/<[^>]+>/g, "")
    .replace(/`/g, "")
    .trim();
}

/** Lines outside fenced code blocks, with their text; fenced lines become empty strings. */
function proseLines(markdown: string): string[] {
  const out: string[] = [];
  let fence: string | null = null;
  for (const line of markdown.split("\n")) {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null && m) {
      fence = m[1]!;
      out.push("");
    } else if (fence !== null) {
      if (line.trimStart().startsWith(fence[0]!.repeat(fence.length)) && line.trim().replace(/[`~]/g, "") === "") fence = null;
      out.push("");
    } else out.push(line);
  }
  return out;
}

/** Every anchor a document defines: heading ids (with GitHub's -1, -2 for repeats) and HTML ids. */
function anchors(markdown: string): Set<string> {
  const ids = new Set<string>();
  const seen = new Map<string, number>();
  const add = (text: string) => {
    const base = slug(renderedText(text));
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  };
  const lines = proseLines(markdown);
  lines.forEach((line, i) => {
    const atx = /^ {0,3}#{1,6}(?:\s+(.*?))?\s*$/.exec(line);
    if (atx) return add((atx[1] ?? "").replace(/\s+#+$/, ""));
    // Setext: a paragraph line underlined with === or ---.
    const next = lines[i + 1];
    if (next !== undefined && /^ {0,3}(=+|-+)\s*$/.test(next) && line.trim() !== "" && !/^\s*([-*+>|]|\d+\.)/.test(line)) add(line.trim());
    for (const m of line.matchAll(/<a\s[^>]*(?:name|id)="([^"]+)"/g)) ids.add(m[1]!);
  });
  return ids;
}

interface Link {
  line: number;
  target: string;
}

/** Inline links, images and reference definitions outside code; targets as written. */
function links(markdown: string): Link[] {
  const out: Link[] = [];
  proseLines(markdown).forEach((raw, i) => {
    const line = raw.replace(/`+[^`]*`+/g, ""); // code spans are not links
    for (const m of line.matchAll(/!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g))
      out.push({ line: i + 1, target: m[1]!.replace(/^<|>$/g, "") });
    const def = /^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)/.exec(line);
    if (def) out.push({ line: i + 1, target: def[1]!.replace(/^<|>$/g, "") });
  });
  return out;
}

const isExternal = (target: string) => /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//");

/** Problems with the relative links of the document at `file`, as "file:line: target: why". */
function brokenLinks(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8");
  const problems: string[] = [];
  const anchorCache = new Map<string, Set<string>>();
  const anchorsOf = (path: string) => {
    let a = anchorCache.get(path);
    if (!a) anchorCache.set(path, (a = anchors(readFileSync(path, "utf8"))));
    return a;
  };
  for (const { line, target } of links(text)) {
    if (isExternal(target)) continue;
    const hash = target.indexOf("#");
    const pathPart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
    const fragment = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
    const where = `${file}:${line}: ${target}`;
    const path = pathPart === "" ? join(root, file) : resolve(dirname(join(root, file)), pathPart);
    if (!path.startsWith(root)) {
      problems.push(`${where}: points outside the repository`);
      continue;
    }
    if (!existsSync(path)) {
      problems.push(`${where}: ${relative(root, path)} does not exist`);
      continue;
    }
    if (fragment === null) continue;
    if (statSync(path).isDirectory() || !path.endsWith(".md")) {
      problems.push(`${where}: #${fragment} on a file that is not Markdown`);
      continue;
    }
    if (!anchorsOf(path).has(fragment)) problems.push(`${where}: no heading #${fragment} in ${relative(root, path)}`);
  }
  return problems;
}

// ---- the checker itself ----

describe("GitHub heading ids", () => {
  test("punctuation is dropped, spaces become hyphens, underscores and case-folded letters stay", () => {
    expect(slug("connect and connect_tls")).toBe("connect-and-connect_tls");
    expect(slug("Wisp and wsproxy clients")).toBe("wisp-and-wsproxy-clients");
    expect(slug("Version 2 (negotiated)")).toBe("version-2-negotiated");
    expect(slug("server.stop() waits — sometimes")).toBe("serverstop-waits--sometimes");
    expect(slug("Ünïcode Wörds")).toBe("ünïcode-wörds");
  });

  test("headings: code ticks and link syntax render as text; repeats get -1, -2; fenced lines are not headings", () => {
    const md = [
      "# Title",
      "## `hello` (v2)",
      "## [Linked](x.md) heading",
      "## Repeat",
      "## Repeat",
      "```toml",
      "# not a heading",
      "```",
      "Setext heading",
      "--------------",
      '<a name="custom"></a>',
    ].join("\n");
    expect([...anchors(md)].sort()).toEqual(["custom", "hello-v2", "linked-heading", "repeat", "repeat-1", "setext-heading", "title"]);
  });

  test("links: inline, image, angle-bracketed, titled and reference links; none inside code", () => {
    const md = [
      "See [a](a.md#x), ![img](pic.png \"t\"), [b](<b c.md>) and `[c](not-a-link.md)`.",
      "[ref]: docs/ref.md#y",
      "```",
      "[d](inside-a-fence.md)",
      "```",
    ].join("\n");
    expect(links(md).map((l) => l.target)).toEqual(["a.md#x", "pic.png", "b c.md", "docs/ref.md#y"]);
  });
});

describe("relative links in the documents resolve", () => {
  test("the documents exist", () => {
    expect(documents).toContain("README.md");
    expect(documents).toContain("docs/protocol.md");
    expect(documents).toContain("docs/bun.md");
  });

  for (const file of documents) {
    test(file, () => {
      expect(brokenLinks(file)).toEqual([]);
    });
  }
});

describe("references to the documents from code comments resolve", () => {
  // Comments cite `docs/x.md#anchor` or `README.md#anchor` instead of explaining twice; a
  // renamed heading must not leave them dangling.
  const sources = ["src", "client/src", "test", "scripts"].flatMap((d) =>
    (function walk(dir: string): string[] {
      if (!existsSync(dir)) return [];
      return readdirSync(dir).flatMap((n) => {
        const p = join(dir, n);
        return statSync(p).isDirectory() ? walk(p) : /\.(ts|js|c)$/.test(n) ? [p] : [];
      });
    })(join(root, d)),
  );
  test("every docs/…md#anchor and README.md#anchor named in src, client, test and scripts exists", () => {
    const problems: string[] = [];
    for (const f of sources.filter((f) => f !== import.meta.path)) {
      const text = readFileSync(f, "utf8");
      for (const m of text.matchAll(/\b((?:docs\/[\w-]+|README)\.md)(#[\w-]+)?/g)) {
        const path = join(root, m[1]!);
        if (!existsSync(path)) problems.push(`${relative(root, f)}: ${m[0]}: no such file`);
        else if (m[2] && !anchors(readFileSync(path, "utf8")).has(m[2].slice(1))) problems.push(`${relative(root, f)}: ${m[0]}: no such heading`);
      }
    }
    expect(problems).toEqual([]);
  });
});
