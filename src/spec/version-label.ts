/**
 * The one rule for the version users see (status, `x-flotilla-version`,
 * replica assignments): the spec's `version`, or the code version when the
 * spec has none.
 */
export function versionLabel(record: { readonly spec: { readonly version?: string | undefined }; readonly codeVersion: string }): string {
  return record.spec.version ?? record.codeVersion;
}

/**
 * The version shown for one replica: the label it started with (its replies'
 * `x-flotilla-version`), except that an old replica whose label equals the
 * current one (same version, other import or actorOptions) is shown by its
 * code version, so old and new replicas can be told apart.
 */
export function replicaVersionLabel(
  replica: { readonly version: string; readonly codeVersion: string },
  current: { readonly spec: { readonly version?: string | undefined }; readonly codeVersion: string } | undefined,
): string {
  const stale = current !== undefined && current.codeVersion !== replica.codeVersion && replica.version === versionLabel(current);
  return stale ? replica.codeVersion : replica.version;
}
