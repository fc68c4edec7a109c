/** A streaming handler for the streaming cell: yields `n` (default 1,000) small chunks as fast as it can. */
export default async function* tokens(request: { query?: Record<string, string> } | null) {
  const n = Number(request?.query?.n ?? 1000);
  for (let i = 0; i < n; i++) yield `tok${i} `;
}
