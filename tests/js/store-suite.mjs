// One conformance suite for every room store. Runs in Node (node:test) and
// in a browser page (tests/browser): it only uses the package API and a
// tiny `check` helper, never Node modules.
//
// Each store kind provides:
//   make()          a fresh, empty store
//   reopen(store)   a new store instance over the same data (a "restart")
//   breakNext(store) makes the backend itself fail the next append midway
//                   (to prove the write is atomic), or undefined to skip

/**
 * `breakNext` for IndexedDB stores: the next append carries one more record
 * whose key (`i: NaN`) is not a valid IndexedDB key, so the transaction
 * aborts after the first puts and the whole batch must vanish.
 */
export function breakNextIndexedDbAppend(store) {
  const append = store.append.bind(store);
  store.append = (records, meta) => {
    store.append = append;
    return append([...records, { ...records[0], i: Number.NaN }], meta);
  };
}

/**
 * `breakNext` for any store: the next append rejects before writing anything
 * (a store that is down), so the engine must undo the batch in memory.
 */
export function breakNextAppend(store) {
  const append = store.append.bind(store);
  store.append = async () => {
    store.append = append;
    throw new Error("injected append failure");
  };
}

export function storeSuite({ api, fixture, make, reopen, breakNext }) {
  const { RoomEngine, KeyRing } = api;
  const keys = new KeyRing();
  for (const [server, s] of Object.entries(fixture.servers)) for (const [id, k] of Object.entries(s.verify_keys)) keys.pin(server, id, k);
  const pdus = fixture.events.map((e) => JSON.stringify(e.pdu));
  const check = (cond, msg) => {
    if (!cond) throw new Error(msg);
  };
  const snapshot = (engine) => ({
    count: engine.eventCount,
    state: engine.currentState().digest,
    extremities: engine.exportGraph().forward_extremities.join(","),
  });
  const ingestAll = async (engine, list, size = 50) => {
    const out = [];
    for (let i = 0; i < list.length; i += size) out.push(...(await engine.ingest(list.slice(i, i + size), keys)));
    return out;
  };

  return [
    ["an empty store loads nothing", async () => {
      const s = make();
      const loaded = await s.load();
      check(loaded.records.length === 0, "records in a new store");
      check(!loaded.roomVersion, "meta in a new store");
    }],
    ["append then load: records in order, with the room meta", async () => {
      const s = make();
      const recs = [
        { i: 0, eventId: "$a", status: "accepted", raw: "{}" },
        { i: 1, eventId: "$b", status: "rejected", raw: '{"x":1}' },
      ];
      await s.append(recs, { roomVersion: "11", roomId: "!r:x" });
      await s.append([{ i: 2, eventId: "$c", status: "accepted", raw: '{"y":"日本"}' }], { roomVersion: "11", roomId: "!r:x" });
      const loaded = await reopen(s).load();
      check(loaded.roomVersion === "11" && loaded.roomId === "!r:x", `meta ${JSON.stringify(loaded)}`);
      check(loaded.records.map((r) => r.eventId).join() === "$a,$b,$c", "order");
      check(loaded.records[2].raw === '{"y":"日本"}', "raw text kept exactly");
    }],
    ["a room reopened after a restart has every event and the same state", async () => {
      const s = make();
      const engine = await RoomEngine.open({ store: s, roomVersion: fixture.room_version });
      const outcomes = await ingestAll(engine, pdus.slice(0, 300));
      check(outcomes.length === 300, "one outcome per PDU");
      const before = snapshot(engine);
      const again = await RoomEngine.open({ store: reopen(s) });
      check(JSON.stringify(snapshot(again)) === JSON.stringify(before), `reopened ${JSON.stringify(snapshot(again))} vs ${JSON.stringify(before)}`);
      const dup = await again.ingest([pdus[0]], keys);
      check(dup[0].status === "duplicate", `re-ingest gives ${dup[0].status}`);
      const more = await again.ingest(pdus.slice(300, 350), keys);
      check(more.length === 50, "keeps working after the restart");
    }],
    ["a failed write leaves the store and the room as they were", async () => {
      const s = make();
      const engine = await RoomEngine.open({ store: s, roomVersion: fixture.room_version });
      await ingestAll(engine, pdus.slice(0, 100));
      const before = snapshot(engine);
      const stored = (await s.load()).records.length;
      if (!breakNext) return;
      breakNext(s);
      let failed = false;
      try {
        await engine.ingest(pdus.slice(100, 150), keys);
      } catch (e) {
        failed = true;
        check(e.code === "M_UNKNOWN", `error code ${e.code}`);
      }
      check(failed, "the ingest reports the failed write");
      check(JSON.stringify(snapshot(engine)) === JSON.stringify(before), "room rolled back");
      check((await reopen(s).load()).records.length === stored, "nothing of the batch was stored");
      const retried = await engine.ingest(pdus.slice(100, 150), keys);
      check(retried.every((o) => o.status !== "duplicate"), "the batch is new again after the rollback");
      check((await reopen(s).load()).records.length > stored, "the retried batch is stored");
    }],
    ["stored PDUs read back exactly, also after a restart and a rebuild, through a 4 KiB page cache when the store pages them", async () => {
      const s = make();
      const engine = await RoomEngine.open({ store: s, roomVersion: fixture.room_version, cacheBytes: 4096 });
      const outcomes = await ingestAll(engine, pdus.slice(0, 200));
      const sent = new Map();
      outcomes.forEach((o, i) => {
        if (o.status === "accepted" || o.status === "rejected") sent.set(o.eventId, JSON.parse(pdus[i]));
      });
      check(sent.size > 150, `only ${sent.size} stored`);
      const paged = engine.pageStats !== null;
      check(paged === !!(s.pages ?? null), `pageStats ${JSON.stringify(engine.pageStats)} for a store ${s.pages ? "with" : "without"} pages`);
      // Key order aside (the details object's keys are sorted).
      const canon = (v) =>
        Array.isArray(v) ? v.map(canon) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v;
      const readBack = (e, what) => {
        for (const [id, pdu] of sent) {
          const got = e.eventDetails(id).pdu;
          check(JSON.stringify(canon(got)) === JSON.stringify(canon(pdu)), `${what}: ${id} reads back ${JSON.stringify(got).slice(0, 80)}`);
        }
      };
      readBack(engine, "as stored");
      if (paged) {
        const st = engine.pageStats;
        check(st.capacity === 4096 && st.bytes <= 4096 && st.misses >= sent.size, `the cache pages: ${JSON.stringify(st)}`);
      }
      const again = await RoomEngine.open({ store: reopen(s), cacheBytes: 4096 });
      readBack(again, "after a restart");
      await again.rebuild();
      readBack(again, "after a rebuild");
      readBack(engine, "the old engine, its store shared with the restored one");
      // A log with a rebuild marker and more records after it than one
      // restore chunk (1,000): the head is placed afresh, the tail replayed
      // in chunks, and the room is the one that was live.
      const later = await ingestAll(again, pdus.slice(200, 1400), 200);
      later.forEach((o, i) => {
        if (o.status === "accepted" || o.status === "rejected") sent.set(o.eventId, JSON.parse(pdus[200 + i]));
      });
      const third = await RoomEngine.open({ store: reopen(s), cacheBytes: 4096 });
      check(JSON.stringify(snapshot(third)) === JSON.stringify(snapshot(again)), `restored in chunks ${JSON.stringify(snapshot(third))} vs live ${JSON.stringify(snapshot(again))}`);
      readBack(third, "after a restart from a log with a marker and a long tail");
    }],
    ["concurrent ingests are serialised (single writer)", async () => {
      const s = make();
      const engine = await RoomEngine.open({ store: s, roomVersion: fixture.room_version });
      const parts = [pdus.slice(0, 50), pdus.slice(50, 100), pdus.slice(100, 150)];
      const results = await Promise.all(parts.map((p) => engine.ingest(p, keys)));
      check(results.flat().length === 150, "every PDU has an outcome");
      const loaded = await reopen(s).load();
      check(loaded.records.every((r, i) => r.i === i), "records are contiguous and in order");
    }],
  ];
}
