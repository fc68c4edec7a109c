/** Builds gzipped tar archives entry by entry, including the hostile ones a packer would never make. */
import { gzipSync } from "node:zlib";
import { Header } from "tar";

type EntryTypeName = "File" | "Directory" | "SymbolicLink" | "Link" | "FIFO" | "CharacterDevice" | "BlockDevice";

export interface CraftedEntry {
  path: string;
  type?: EntryTypeName;
  content?: string;
  linkpath?: string;
  mode?: number;
}

export function craftArchive(entries: readonly CraftedEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.content ?? "");
    const type = e.type ?? "File";
    const header = new Header({
      path: e.path,
      type,
      mode: e.mode ?? (type === "Directory" ? 0o755 : 0o644),
      size: type === "File" ? body.length : 0,
      mtime: new Date(0),
      uid: 0,
      gid: 0,
      ...(e.linkpath !== undefined ? { linkpath: e.linkpath } : {}),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === "File" && body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}
