// The Worker's outbound federation client, from its configuration: server
// discovery (with DOH_URL: SRV records, and host names checked against the
// private-address policy, through DNS-over-HTTPS), the KEY_SERVER_URL
// override for tests, and ALLOW_PRIVATE_ADDRESSES.
import { FederationClient, dohHostResolver, dohSrvResolver } from "../../pkg/workerd.js";
import type { Config } from "./config.js";

/** A federation client for this configuration. */
export function federationClientOf(config: Config): FederationClient {
  return new FederationClient({
    serverName: config.serverName,
    signingKey: config.signingKey,
    baseUrl: config.keyServerUrl,
    allowPrivateAddresses: config.allowPrivateAddresses,
    resolveSrv: config.dohUrl ? dohSrvResolver({ url: config.dohUrl }) : undefined,
    resolveHost: config.dohUrl && !config.allowPrivateAddresses ? dohHostResolver({ url: config.dohUrl }) : undefined,
  });
}
