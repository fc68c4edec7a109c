/** The trivial handler as TypeScript in CommonJS scope: it loads through tsx's require hook alone. */
export default function hello(): { ok: boolean } {
  return { ok: true };
}
