// The query every consumer project runs against the installed package: a
// demo room ingested with its servers' keys, then `/state_ids` of its last
// event, a federation request through `FederationServer`, and one bad
// argument. Plain JS with no imports: each project passes in the `roomdag`
// API it loaded (ESM, CommonJS, a bundle, a Worker), so every result comes
// from that copy.
export default async function probe(api) {
  await api.init();
  const fixture = api.demoRoom(60);
  const keys = new api.KeyRing();
  for (const [server, s] of Object.entries(fixture.servers)) {
    for (const [keyId, key] of Object.entries(s.verify_keys)) keys.pin(server, keyId, key);
  }
  const room = await api.RoomEngine.open({ store: new api.MemoryStore(), roomVersion: fixture.room_version });
  const outcomes = await room.ingest(fixture.events.map((e) => e.pdu), keys);
  const last = fixture.events[fixture.events.length - 1].event_id;
  const stateIds = room.stateIds(Object.keys(fixture.servers)[0], last);
  const server = new api.FederationServer({
    serverName: "consumer.example",
    signingKey: { keyId: "ed25519:1", seed: fixture.servers[Object.keys(fixture.servers)[0]].signing_key_seed },
    rooms: new api.RoomDirectory({ createStore: () => new api.MemoryStore() }),
  });
  const version = await server.handleFederationRequest(new Request("https://consumer.example/_matrix/federation/v1/version"));
  let badArgument;
  try {
    await api.RoomEngine.open({ store: new api.MemoryStore(), roomVersion: 11 });
  } catch (e) {
    badArgument = `${e.name} ${e.code}`;
  }
  return {
    accepted: outcomes.filter((o) => o.status === "accepted").length,
    stateIds: stateIds.status === 200 ? stateIds.body.pdu_ids.length : stateIds.status,
    digest: room.currentState().digest,
    version: (await version.json()).server?.name,
    badArgument,
  };
}
