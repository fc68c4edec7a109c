/**
 * Import references (`path/to/module.ts#Export`): the rule every spec is
 * checked against, kept free of the schema library so a replica process can
 * apply it again without loading it.
 */

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** Why an import reference is refused, or undefined when it is acceptable. */
export function importRefProblem(ref: string): string | undefined {
  const hash = ref.lastIndexOf("#");
  const path = hash === -1 ? ref : ref.slice(0, hash);
  const exportName = hash === -1 ? "default" : ref.slice(hash + 1);
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
