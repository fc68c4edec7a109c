/**
 * Flotilla: serve TypeScript deployments as replica processes on Redis + BullMQ.
 *
 * @example
 * import { deployment, connect } from "flotilla";
 *
 * connect({ redis: "redis://127.0.0.1:6379", namespace: "demo" });
 * const echo = deployment({ name: "echo", import: "echo.ts#Echo", numReplicas: 2 });
 * await echo.deploy();                        // waits until HEALTHY
 * console.log(await echo.handle().call({ text: "hi" }));
 * await echo.options({ numReplicas: 10 }).deploy();
 * await echo.delete();
 */
export { connect, disconnect, Connection, type ConnectOptions } from "./api/connection.js";
export { deployment, getHandle, Deployment, DeploymentHandle, type DeployOptions, type CallOptions, type ResultOptions } from "./api/deployment.js";
export type { AsyncRequestView, AsyncResult, AsyncStatus } from "./queue/async-requests.js";
export { response, type HttpResponse, type HttpRequestData, type Reply, type RequestJob } from "./shared/protocol.js";
export type { HttpRequest } from "./actors/replica-runner.js";
export type { RequestContext } from "./actors/handler-loader.js";
export { batch, type BatchedFunction, type BatchCallContext, type BatchOptions, type BatchOptionsInput } from "./actors/batch.js";
export { FlotillaError, ERROR_CODES, type ErrorCode } from "./errors.js";
export {
  parseDeploymentSpec,
  parseDeployFile,
  type DeploymentSpec,
  type DeploymentSpecInput,
  type AutoscalingConfig,
  type ActorOptions,
} from "./spec/deployment-spec.js";
export type { StatusReport, DeploymentView, ReplicaView, HostView } from "./client/cluster-status.js";
