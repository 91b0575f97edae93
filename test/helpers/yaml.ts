// Reading the deploy/ manifests in tests. Parsing is Bun's own YAML 1.2 parser (Bun.YAML, built
// into the runtime, no dependency); this file adds the two things it does not do for us:
//
// - a file of several documents comes back as one list per document, always (Bun.YAML returns a
//   bare value for one document and an array for several, so a one-document file whose value is
//   itself a list would be ambiguous);
// - duplicate keys in a block mapping are reported: Bun.YAML keeps the last one silently, while
//   kubectl refuses the manifest and docker compose may take either, so a duplicated `env:` or
//   `ports:` would pass a test here and break at deploy time.

/** Every document of a YAML stream, in order (`---` lines separate them). */
export function parseYamlDocuments(text: string): unknown[] {
  return splitDocuments(text)
    .filter((doc) => doc.split("\n").some((l) => l.trim() !== "" && !l.trimStart().startsWith("#")))
    .map((doc) => Bun.YAML.parse(doc));
}

/** The text of each document: split at lines that are `---` (optionally followed by a comment). */
function splitDocuments(text: string): string[] {
  const docs: string[][] = [[]];
  for (const line of text.split("\n")) {
    if (/^---(\s+#.*)?\s*$/.test(line)) docs.push([]);
    else docs.at(-1)!.push(line);
  }
  return docs.map((d) => d.join("\n"));
}

/** A key written twice in the same block mapping: where, and the path to the mapping. */
export interface DuplicateKey {
  line: number; // 1-based, the second occurrence
  key: string;
  path: string; // the keys above it, "a.b[].c"
}

interface Scope {
  indent: number; // the column of this mapping's keys
  item: boolean; // the mapping is a list item ("- key: …")
  keys: Set<string>;
  last: string; // the latest key, the parent of anything deeper
}

/**
 * Duplicate keys in the block mappings of a YAML text, found line by line: enough for the
 * block style the deploy/ files use (keys at the start of a line, `- ` list items, `|`/`>`
 * block scalars, flow collections on one line, comments). Flow mappings (`{a: 1, a: 2}`) are
 * not looked into.
 */
export function duplicateKeys(text: string): DuplicateKey[] {
  const out: DuplicateKey[] = [];
  let scopes: Scope[] = [];
  let blockScalarAbove: number | null = null; // lines indented deeper than this belong to a block scalar
  text.split("\n").forEach((raw, i) => {
    if (/^---(\s+#.*)?\s*$/.test(raw)) {
      scopes = [];
      blockScalarAbove = null;
      return;
    }
    if (raw.trim() === "" || raw.trimStart().startsWith("#")) return;
    let column = raw.length - raw.trimStart().length;
    if (blockScalarAbove !== null) {
      if (column > blockScalarAbove) return;
      blockScalarAbove = null;
    }
    let rest = raw.slice(column);
    // "- " starts a list item: what follows it on the line begins a new mapping.
    let item = false;
    while (/^-(\s|$)/.test(rest)) {
      const after = rest.slice(1);
      column += 1 + (after.length - after.trimStart().length);
      rest = after.trimStart();
      item = true;
    }
    const m = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|<<|[^\s#"'{[\]][^#]*?)\s*:(?:\s|$)/.exec(rest);
    if (m === null) return; // a scalar list item, a flow collection, or a continuation line
    const key = unquote(m[1]!.trim());
    scopes = scopes.filter((s) => (item ? s.indent < column : s.indent <= column));
    let scope = scopes.at(-1);
    if (scope === undefined || scope.indent !== column) {
      scope = { indent: column, item, keys: new Set(), last: "" };
      scopes.push(scope);
    }
    if (scope.keys.has(key)) out.push({ line: i + 1, key, path: pathOf(scopes) });
    scope.keys.add(key);
    scope.last = key;
    const value = rest.slice(m[0].length).replace(/\s+#.*$/, "").trim();
    if (/^[|>][-+0-9]*$/.test(value)) blockScalarAbove = column;
  });
  return out;
}

function unquote(k: string): string {
  if (k.startsWith('"')) return JSON.parse(k) as string;
  if (k.startsWith("'")) return k.slice(1, -1).replace(/''/g, "'");
  return k;
}

/** Where the innermost mapping sits: the keys above it, "[]" after a list ("spec.ports[]"). */
function pathOf(scopes: Scope[]): string {
  const parts: string[] = [];
  scopes.forEach((s, i) => {
    if (s.item) {
      if (parts.length === 0) parts.push("[]");
      else parts[parts.length - 1] += "[]";
    }
    if (i < scopes.length - 1) parts.push(s.last);
  });
  return parts.join(".");
}
