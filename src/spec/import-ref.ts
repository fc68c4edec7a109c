/**
 * Import references (`path/to/module.ts#Export`): the one parser and the rule
 * every spec is checked against, kept free of the schema library so a replica
 * process can apply them again without loading it.
 */

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

export interface ImportRef {
  /** The module file, relative to the app directory. */
  modulePath: string;
  /** The export to serve: `default` when the reference has no `#`. */
  exportName: string;
}

/** Splits `module#export` at its last `#`; checks nothing (see importRefProblem). */
export function parseImportRef(ref: string): ImportRef {
  const hash = ref.lastIndexOf("#");
  return hash === -1 ? { modulePath: ref, exportName: "default" } : { modulePath: ref.slice(0, hash), exportName: ref.slice(hash + 1) };
}

/** Why an import reference is refused, or undefined when it is acceptable. */
export function importRefProblem(ref: string): string | undefined {
  const { modulePath: path, exportName } = parseImportRef(ref);
  if (path.length === 0) return "the module path is empty";
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(path)) return "URLs and node: builtins are not allowed; name a module file inside the app directory";
  if (path.startsWith("/") || path.startsWith("\\") || /^[a-zA-Z]:/.test(path)) return "absolute paths are not allowed; give a path relative to the app directory";
  if (path.includes("\\")) return "use forward slashes in module paths";
  if (path.split("/").some((seg) => seg === "..")) return "'..' is not allowed; the module must be inside the app directory";
  if (path.includes("\0")) return "the path contains a NUL byte";
  if (!/\.(ts|mts|js|mjs)$/.test(path)) return "the module must be a .ts, .mts, .js or .mjs file";
  if (exportName !== "default" && !IDENTIFIER.test(exportName)) return `'${exportName}' is not a valid export name`;
  return undefined;
}
