/**
 * Starting replica processes: the command line and environment of a new one,
 * and the processes a host starts ahead of need (PrestartedProcess).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { REPLICA_PRESTART_ENV } from "../actors/replica-config.js";
import type { HandlerLoader } from "../actors/module-scope.js";
import type { ReplicaToHost } from "../actors/replica-ipc.js";
import { replicaOutput } from "../shared/logger.js";
import type { ReplicaChild, ReplicaLauncher } from "./replica-launcher.js";

/** The replica entry next to this file: compiled JS, or TS when running from source under tsx. */
function replicaEntry(): { file: string; execArgv: string[] } {
  const here = import.meta.url;
  if (here.endsWith(".ts")) return { file: fileURLToPath(new URL("../actors/replica-main.ts", here)), execArgv: ["--import", "tsx"] };
  return { file: fileURLToPath(new URL("../actors/replica-main.js", here)), execArgv: [] };
}

/**
 * Node flags of replica processes. A 1 MiB young generation keeps an idle
 * replica under 80 MiB resident (V8 grows it to 16 MiB under allocation
 * pressure otherwise). FLOTILLA_REPLICA_EXEC_ARGV adds flags after these, so
 * it can override them (e.g. --max-semi-space-size=16, --cpu-prof,
 * --max-old-space-size=512).
 */
function execArgv(env: NodeJS.ProcessEnv): string[] {
  return ["--max-semi-space-size=1", ...(env.FLOTILLA_REPLICA_EXEC_ARGV ?? "").split(" ").filter(Boolean), ...replicaEntry().execArgv];
}

/**
 * glibc malloc arenas of a replica process (MALLOC_ARENA_MAX). By default
 * each of its threads (the main one, the TypeScript loader's, V8's and
 * libuv's helpers) may get an arena of its own, up to 8 per core, each
 * holding on to what it freed. With two, a replica is 4–7 MiB smaller 20 s
 * after a load at 256 connections (72–77 instead of 79–82 MiB), and its
 * throughput did not change measurably. The host's or the deployment's
 * MALLOC_ARENA_MAX wins.
 */
export const REPLICA_MALLOC_ARENAS = "2";

export function spawnReplicaChild(env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [...execArgv(env), replicaEntry().file], {
    // JSON logs: the host prints them (see replicaOutput).
    env: { MALLOC_ARENA_MAX: REPLICA_MALLOC_ARENAS, ...env, FLOTILLA_LOG_PRETTY: "0" },
    // stdout is piped (not inherited) so that the host can collect a handler's console.log lines too.
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    detached: true,
    serialization: "json",
  });
}

/** Replica processes as OS processes: what every host uses outside the fleet simulation. */
export const processLauncher: ReplicaLauncher = { spawn: spawnReplicaChild };

/**
 * Environment variables read only while a process starts (by Node, libuv, the
 * dynamic loader, the C library's allocator, OpenSSL): a replica whose
 * deployment sets one of these needs a process of its own.
 */
const START_UP_ENV = /^(NODE_|UV_|LD_|MALLOC_|GLIBC_|OPENSSL_|SSL_CERT_|FLOTILLA_REPLICA_EXEC_ARGV$)/;

/**
 * A replica process started ahead of need: it has loaded the runtime and waits
 * for its assignment. The host keeps it ready so that a new replica starts in
 * the time its handler takes to load.
 */
export class PrestartedProcess {
  readonly child: ReplicaChild;
  /** Resolves once the process is ready or has ended. */
  readonly settled: Promise<void>;
  private readonly onStderr = replicaOutput();
  private isReady = false;
  private ended = false;

  /** `loader`: the process readies that module loader ahead too (tsx's hooks: ~150 ms less to start a .ts handler). */
  constructor(
    readonly loader: HandlerLoader,
    onExit: (p: PrestartedProcess) => void,
    launcher: ReplicaLauncher = processLauncher,
  ) {
    this.child = launcher.spawn({ ...process.env, [REPLICA_PRESTART_ENV]: loader });
    this.child.stderr?.on("data", this.onStderr);
    this.child.stdout?.on("data", forwardStdout);
    let settle: () => void = () => undefined;
    this.settled = new Promise((resolve) => (settle = resolve));
    this.child.on("message", (message: ReplicaToHost) => {
      if (message.type === "prestarted") {
        this.isReady = true;
        settle();
      }
    });
    this.child.on("error", () => undefined);
    this.child.once("exit", () => {
      this.ended = true;
      settle();
      onExit(this);
    });
  }

  /** It has loaded the runtime and waits for its assignment. */
  get ready(): boolean {
    return this.isReady;
  }

  get exited(): boolean {
    return this.ended;
  }

  /**
   * Whether it can become a replica with this environment (the host's plus the
   * deployment's). One still loading fits too: it is further along than a new
   * spawn would be, and a second process would compete with it for the cores.
   */
  fits(deploymentEnv: Record<string, string>): boolean {
    return !this.exited && this.child.connected && !Object.keys(deploymentEnv).some((name) => START_UP_ENV.test(name));
  }

  /** Hands the process over to a ReplicaProcess: its listeners go with it. */
  adopt(): ReplicaChild {
    this.child.stderr?.off("data", this.onStderr);
    this.child.stdout?.off("data", forwardStdout);
    this.child.removeAllListeners("message");
    this.child.removeAllListeners("exit");
    this.child.removeAllListeners("error");
    return this.child;
  }

  stop(): void {
    if (!this.exited) this.child.kill("SIGTERM");
  }
}

export function forwardStdout(chunk: Buffer): void {
  process.stdout.write(chunk);
}
