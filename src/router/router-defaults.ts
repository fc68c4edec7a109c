/**
 * The router's option defaults, the one place they are written: applied by
 * parseRouterOptions and shown by the CLI's help, which must not load the
 * schema library to show them.
 */
export const ROUTER_DEFAULTS = {
  port: 8000,
  bind: "0.0.0.0",
  requestTimeoutS: 60,
  maxBodyBytes: 10 * 1024 * 1024,
} as const;
