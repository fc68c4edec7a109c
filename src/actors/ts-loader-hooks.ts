/**
 * A module hook of Flotilla's own, in Node's loader thread beside tsx's ESM
 * hooks: it only listens on the port it gets, and stops that thread's esbuild
 * when the replica asks (see releaseTypeScriptCompiler in ts-loader.ts).
 */
import type { MessagePort } from "node:worker_threads";
import { STOP_ESBUILD, stopEsbuild } from "./esbuild-service.js";

export function initialize(data: { port: MessagePort }): void {
  data.port.on("message", (message: unknown) => {
    if (message === STOP_ESBUILD) stopEsbuild();
  });
  data.port.unref();
}
