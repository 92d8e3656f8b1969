// A tiny static server for browser tests: the test bundle, pkg/ and fixtures.
import { createServer } from "node:http";
import { readFileSync, existsSync, statSync } from "node:fs";
import { join, extname } from "node:path";

const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml" };

/** Serves `routes` (URL prefix → directory) on a free port; resolves to {url, close}. */
export function serve(routes, fixturesDir) {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    let file;
    if (path.startsWith("/fixture/")) file = join(fixturesDir, path.slice("/fixture/".length));
    else {
      for (const [prefix, dir] of Object.entries(routes)) {
        if (path.startsWith(prefix)) {
          file = join(dir, path.slice(prefix.length) || "index.html");
          break;
        }
      }
    }
    if (!file || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() })));
}
