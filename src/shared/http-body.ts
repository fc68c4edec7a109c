/** Reads a request body as UTF-8 text, refusing (413) anything over the limit without buffering it. */
import type { IncomingMessage } from "node:http";
import { FlotillaError } from "../errors.js";

export function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > maxBytes) {
    req.resume();
    return Promise.reject(tooLarge(maxBytes));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on("data", (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > maxBytes) {
        done = true;
        chunks.length = 0;
        req.pause();
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (done) return;
      done = true;
      resolve(chunks.length === 1 ? (chunks[0] as Buffer).toString("utf8") : Buffer.concat(chunks).toString("utf8"));
    });
    req.on("error", (err) => {
      if (done) return;
      done = true;
      reject(new FlotillaError("INVALID_REQUEST", `the request body could not be read: ${err.message}`));
    });
    req.on("aborted", () => {
      if (done) return;
      done = true;
      reject(new FlotillaError("INVALID_REQUEST", "the client went away before sending the whole body"));
    });
  });
}

function tooLarge(maxBytes: number): FlotillaError {
  return new FlotillaError("PAYLOAD_TOO_LARGE", `the request body is larger than the limit of ${maxBytes} bytes`);
}
