"""Cross-check the generated files WITHOUT Synapse (Python standard library only).

A from-scratch implementation of the spec's redaction algorithm (per room
version), content hash and reference hash / event ID, applied to:
  * every event of state_res/*.json (event_id, hashes.sha256, v12 room ID and
    implied create event) and of auth_rules.json (event IDs);
  * every redaction case (compared with expected_spec when present, else expected).
Run: python3 tests/data/gen/check_independent.py
"""
import os
import json, hashlib, base64, glob
def canon(v): return json.dumps(v, ensure_ascii=False, separators=(',',':'), sort_keys=True).encode()
def redact(ev, rv):
    rv=int(rv)
    keys={"event_id","type","room_id","sender","state_key","content","hashes","signatures","depth","prev_events","auth_events","origin_server_ts"}
    if rv<11: keys|={"prev_state","origin","membership"}
    c=ev.get("content",{}); t=ev["type"]; keep=[]
    if t=="m.room.member":
        keep=["membership"]+(["join_authorised_via_users_server"] if rv>=9 else [])
    elif t=="m.room.create": keep=list(c) if rv>=11 else ["creator"]
    elif t=="m.room.join_rules": keep=["join_rule"]+(["allow"] if rv>=8 else [])
    elif t=="m.room.power_levels": keep=["ban","events","events_default","kick","redact","state_default","users","users_default"]+(["invite"] if rv>=11 else [])
    elif t=="m.room.aliases" and rv<=5: keep=["aliases"]
    elif t=="m.room.history_visibility": keep=["history_visibility"]
    elif t=="m.room.redaction" and rv>=11: keep=["redacts"]
    nc={k:c[k] for k in keep if k in c}
    if t=="m.room.member" and rv>=11 and isinstance(c.get("third_party_invite"),dict):
        tpi=c["third_party_invite"]; nc["third_party_invite"]={"signed":tpi["signed"]} if "signed" in tpi else {}
    out={k:v for k,v in ev.items() if k in keys}; out["content"]=nc
    return out
def ref_id(ev, rv):
    e={k:v for k,v in ev.items() if k!="event_id"}
    r=redact(e, rv); r.pop("signatures",None); r.pop("unsigned",None)
    b=base64.b64encode(hashlib.sha256(canon(r)).digest()).decode().rstrip("=")
    if int(rv)>=4: b=b.replace("+","-").replace("/","_")
    return "$"+b
def content_hash(ev):
    e={k:v for k,v in ev.items() if k not in ("event_id","hashes","signatures","unsigned")}
    return base64.b64encode(hashlib.sha256(canon(e)).digest()).decode().rstrip("=")
DATA = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
n=0
for f in glob.glob(os.path.join(DATA, 'state_res/*.json')):
    d=json.load(open(f)); rv=d['room_version']
    for ev in d['events']:
        assert ref_id(ev,rv)==ev['event_id'], (f, ev['event_id'])
        assert content_hash(ev)==ev['hashes']['sha256']
        if rv=='12':
            assert d['room_id']=='!'+d['events'][0]['event_id'][1:]
            assert d['events'][0]['event_id'] not in ev['auth_events']
        n+=1
d=json.load(open(os.path.join(DATA, 'auth_rules.json')))
for c in d['cases']:
    for ev in c['auth_state']+c.get('room_events',[])+([c['event']] if 'event_id' in c['event'] else []):
        assert ref_id(ev,c['room_version'])==ev['event_id'], (c['name'])
        n+=1
for f in glob.glob(os.path.join(DATA, 'redaction/*.json')):
    for c in json.load(open(f))['cases']:
        exp=dict(c.get('expected_spec',c['expected']))
        got=redact(c['input'], c['room_version'])
        if int(c['room_version'])==12 and c['input']['type']=='m.room.create' and 'room_id' in c['input']: pass
        assert got==exp, (c['name'], got, exp)
        n+=1
print('ok', n)
